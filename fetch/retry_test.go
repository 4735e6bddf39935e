package fetch

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRetryPolicyBoundsAttempts(t *testing.T) {
	transient := errors.New("503")
	p := RetryPolicy{Attempts: 3, AttemptTimeout: 50 * time.Millisecond, BaseBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}
	for _, tc := range []struct {
		name      string
		fails     int // attempts that fail before success (-1: all)
		err       error
		wantCalls int
		wantErr   bool
	}{
		{"success first time", 0, transient, 1, false},
		{"transient then success", 2, transient, 3, false},
		{"transient exhausts attempts", -1, transient, 3, true},
		{"permanent stops at once", -1, Permanent(transient), 1, true},
		{"changed object is permanent", -1, Permanent(ErrChanged), 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := p.Do(context.Background(), func(context.Context) error {
				calls++
				if tc.fails < 0 || calls <= tc.fails {
					return tc.err
				}
				return nil
			})
			if calls != tc.wantCalls || (err != nil) != tc.wantErr {
				t.Fatalf("calls=%d err=%v; want calls=%d err=%v", calls, err, tc.wantCalls, tc.wantErr)
			}
		})
	}
}

func TestRetryPolicyAttemptDeadline(t *testing.T) {
	p := RetryPolicy{Attempts: 2, AttemptTimeout: 20 * time.Millisecond, BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond}
	start := time.Now()
	err := p.Do(context.Background(), func(ctx context.Context) error {
		<-ctx.Done() // a stalled origin
		return ctx.Err()
	})
	if err == nil || time.Since(start) > time.Second {
		t.Fatalf("err=%v after %s; want a bounded failure", err, time.Since(start))
	}
}

func TestRetryPolicyStopsWhenCallerGivesUp(t *testing.T) {
	p := RetryPolicy{Attempts: 100, AttemptTimeout: time.Second, BaseBackoff: 50 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	calls := 0
	err := p.Do(ctx, func(context.Context) error { calls++; return errors.New("503") })
	if err == nil || calls > 2 {
		t.Fatalf("calls=%d err=%v; the caller's deadline must end the retries", calls, err)
	}
}

func TestDigestAlgorithms(t *testing.T) {
	for _, tc := range []struct{ algo, data, want string }{
		{AlgoSHA256, "hello\n", "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"},
		{AlgoGitSHA1, "hello\n", "ce013625030ba8dba906f756967f9e9ca394464a"}, // git hash-object
		{AlgoMD5, "hello\n", "b1946ac92492d2347c6235b4d2611184"},
		{AlgoCRC32C, "123456789", "e3069283"}, // the CRC-32C check value
	} {
		got, err := Digest(tc.algo, stringsReader(tc.data), int64(len(tc.data)))
		if err != nil || got != tc.want {
			t.Errorf("%s = %s, %v; want %s", tc.algo, got, err, tc.want)
		}
	}
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }
