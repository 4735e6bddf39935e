package fetch

import "testing"

// Hostile and confused Content-Range values. The rows marked "s3" were
// accepted by s3src's copy before this change (a "*" total skipped its
// changed-size check; surrounding space was trimmed by hand), the rest by
// neither copy.
func TestParseContentRange(t *testing.T) {
	type r struct {
		start, last, total int64
		ok                 bool
	}
	for _, c := range []struct {
		v    string
		want r
	}{
		{"bytes 0-9/10", r{0, 9, 10, true}},
		{"bytes 100-199/5000", r{100, 199, 5000, true}},
		{"bytes 0-0/1", r{0, 0, 1, true}},
		{"bytes 007-8/9", r{7, 8, 9, true}}, // leading zeros are still digits
		{"bytes 0-9223372036854775806/9223372036854775807", r{0, 9223372036854775806, 9223372036854775807, true}},
		{"bytes 0-9/*", r{}},        // s3: a satisfied range must say the length
		{"bytes 0-9/**", r{}},       // s3 refused, hf refused: stays refused
		{" bytes 0-9/10 ", r{}},     // s3: net/http trims; space left is not ours to forgive
		{"bytes */10", r{}},         // an unsatisfied-range answer, not bytes
		{"bytes 9-0/10", r{}},       // start past last
		{"bytes 0-10/10", r{}},      // last past the end
		{"bytes 0-9/9", r{}},        // last == total
		{"bytes 0-9/0", r{}},        // empty object cannot hold a range
		{"bytes -1-9/10", r{}},      // sign on start
		{"bytes +1-9/10", r{}},      // ParseInt would take it
		{"bytes 0-+9/10", r{}},      //
		{"bytes 0-9/+10", r{}},      //
		{"bytes 0-9/-10", r{}},      // a negative total once read as "*"
		{"bytes 0--9/10", r{}},      //
		{"bytes 0-9 /10", r{}},      // space inside
		{"bytes  0-9/10", r{}},      //
		{"bytes 0-9/1\n0", r{}},     // newline inside
		{"bytes 0-9/10\x00", r{}},   // NUL after
		{"bytes 0x0-0x9/0x10", r{}}, // hex
		{"bytes 0-9223372036854775807/9223372036854775808", r{}}, // past int64
		{"bytes 0-9/99999999999999999999", r{}},                  // past int64
		{"Bytes 0-9/10", r{}},                                    // the unit is case-sensitive in practice
		{"items 0-9/10", r{}},                                    //
		{"bytes 0-9", r{}},                                       // no total
		{"bytes 0/10", r{}},                                      // no last
		{"bytes 0-9/10/11", r{}},                                 //
		{"bytes 0-9,20-29/100", r{}},
		{"bytes", r{}},
		{"", r{}},
		{"bytes ٠-٩/١٠", r{}}, // Arabic-Indic digits are not ASCII digits
	} {
		s, l, tot, ok := ParseContentRange(c.v)
		if got := (r{s, l, tot, ok}); got != c.want {
			t.Errorf("ParseContentRange(%q) = %+v, want %+v", c.v, got, c.want)
		}
	}
}
