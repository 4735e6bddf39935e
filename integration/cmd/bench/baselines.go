package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// weightfsTool mounts the model with the weightfs binary, from the Hub
// emulator ("hf") or the S3 emulator ("s3").
func (b *bench) weightfsTool(kind string, o *origin) *tool {
	t := &tool{name: "weightfs-" + kind, volume: "model", readyLine: "listing served"}
	repo, extra := o.repoID, "    revision: main\n"
	env := cleanEnv()
	if kind == "s3" {
		repo, extra = "s3://"+s3Bucket+"/"+o.prefix, ""
		env = append(env, "AWS_ENDPOINT_URL_S3="+b.s3.url, "AWS_ACCESS_KEY_ID="+s3Key, "AWS_SECRET_ACCESS_KEY="+s3Secret,
			"AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true")
		t.counters = s3Counters{b.s3}
	} else {
		env = append(env, "HF_ENDPOINT="+b.hub.URL())
		t.counters = hubCounters{b.hub}
	}
	cfg := filepath.Join(b.work, fmt.Sprintf("config-%s-%d.yaml", kind, o.sizeMB))
	cfgText := fmt.Sprintf("model_cache:\n  - repo_id: %s\n%s    use_volume: true\n    volume_folder: model\n", repo, extra)
	t.command = func(mp, cache string) (*exec.Cmd, error) {
		if err := os.WriteFile(cfg, []byte(cfgText), 0o644); err != nil {
			return nil, err
		}
		args := []string{"mount", "--config", cfg, "--mountpoint", mp, "--cache-dir", cache,
			"--secrets-dir", filepath.Join(b.work, "secrets"), "--data-dir", filepath.Join(b.work, "data")}
		cmd := exec.Command(b.s.bin, append(args, b.s.weightfsArgs...)...)
		cmd.Env = append(env, b.s.weightfsEnv...)
		return cmd, nil
	}
	return t
}

// cleanEnv is the environment without credentials or endpoints that could
// point a tool somewhere other than the emulators.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "HF_") || k == "HUGGING_FACE_HUB_TOKEN" ||
			strings.HasPrefix(k, "RCLONE_") || strings.HasPrefix(k, "WEIGHTFS_") || k == "STORAGE_EMULATOR_HOST" || strings.HasPrefix(k, "TRUSS_SECRET_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// rcloneSettings are the rclone mount flags: a full VFS cache (on disk, kept
// across restarts) and readahead and chunk sizes generous enough for
// sequential multi-GiB reads. rclone 1.60 streams each open file over one
// connection at a time; it has no multi-stream option for mounts.
var rcloneSettings = []string{
	"--vfs-cache-mode", "full", "--read-only", "--no-modtime",
	"--dir-cache-time", "1h", "--attr-timeout", "1h", "--vfs-cache-max-age", "24h",
	"--buffer-size", "32M", "--vfs-read-ahead", "256M", "--max-read-ahead", "1M",
	"--vfs-read-chunk-size", "32M", "--vfs-read-chunk-size-limit", "512M",
	"--s3-no-check-bucket", "--low-level-retries", "3",
}

func (b *bench) rcloneTool(o *origin) *tool {
	// The endpoint is quoted: an unquoted ':' ends the connection string.
	remote := fmt.Sprintf(":s3,provider=Other,endpoint='%s',access_key_id=%s,secret_access_key=%s:%s/%s",
		b.s3.url, s3Key, s3Secret, s3Bucket, o.prefix)
	conf := filepath.Join(b.work, "rclone.conf")
	return &tool{name: "rclone-s3", counters: s3Counters{b.s3}, command: func(mp, cache string) (*exec.Cmd, error) {
		if err := os.WriteFile(conf, nil, 0o600); err != nil {
			return nil, err
		}
		args := append([]string{"mount", remote, mp, "--config", conf, "--cache-dir", cache}, rcloneSettings...)
		cmd := exec.Command("rclone", args...)
		cmd.Env = cleanEnv()
		return cmd, nil
	}}
}

// s3fsSettings: a disk cache (use_cache) so a restart can be warm, parallel
// ranged downloads of 8 MB parts, and long stat caching for immutable files.
var s3fsSettings = "ro,use_path_request_style,endpoint=us-east-1,parallel_count=16,multipart_size=8," +
	"stat_cache_expire=3600,max_stat_cache_size=100000,readwrite_timeout=60,connect_timeout=10,retries=3,dbglevel=err"

func (b *bench) s3fsTool(o *origin) *tool {
	passwd := filepath.Join(b.work, "s3fs.passwd")
	return &tool{name: "s3fs-s3", counters: s3Counters{b.s3}, command: func(mp, cache string) (*exec.Cmd, error) {
		if err := os.WriteFile(passwd, []byte(s3Key+":"+s3Secret+"\n"), 0o600); err != nil {
			return nil, err
		}
		opts := fmt.Sprintf("%s,url=%s,passwd_file=%s,use_cache=%s", s3fsSettings, b.s3.url, passwd, cache)
		cmd := exec.Command("s3fs", s3Bucket+":/"+o.prefix, mp, "-f", "-o", opts)
		cmd.Env = cleanEnv()
		return cmd, nil
	}}
}

// toolVersion is the first line of `name --version`, or why there is none.
func toolVersion(name string, args ...string) (string, bool) {
	if len(args) == 0 {
		args = []string{"--version"}
	}
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return fmt.Sprintf("%s not available: %v", name, err), false
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line, true
}

// download is the download-then-load baseline's first half: what an eager
// downloader (truss-transfer, hf_transfer) does. Every file is resolved on
// the Hub; LFS files are then fetched from the CDN URL the Hub redirects to
// in ranged GETs of rangeSize, `ranges` of them in flight over all files, and
// written in place into dst.
func download(ctx context.Context, hubURL, repoID string, files []fileInfo, dst string, ranges int, rangeSize int64) error {
	tr := &http.Transport{MaxIdleConns: ranges * 2, MaxIdleConnsPerHost: ranges * 2, DisableCompression: true,
		ResponseHeaderTimeout: 30 * time.Second, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	sem := make(chan struct{}, ranges)
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	fail := func(err error) { errOnce.Do(func() { first = err }) }
	for _, fi := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := downloadFile(ctx, client, sem, hubURL, repoID, fi, dst, rangeSize); err != nil {
				fail(fmt.Errorf("%s: %w", fi.rel, err))
			}
		}()
	}
	wg.Wait()
	return first
}

func downloadFile(ctx context.Context, client *http.Client, sem chan struct{}, hubURL, repoID string, fi fileInfo, dst string, rangeSize int64) error {
	path := filepath.Join(dst, fi.rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	segs := strings.Split(fi.rel, "/")
	for i := range segs {
		segs[i] = url.PathEscape(segs[i])
	}
	resolve := hubURL + "/" + repoID + "/resolve/main/" + strings.Join(segs, "/")
	sem <- struct{}{}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, resolve, nil)
	resp, err := client.Do(req)
	if err != nil {
		<-sem
		return err
	}
	switch resp.StatusCode {
	case http.StatusOK: // a small file, served by the Hub itself
		_, err = io.Copy(f, resp.Body)
		resp.Body.Close()
		<-sem
		return err
	case http.StatusFound:
	default:
		resp.Body.Close()
		<-sem
		return fmt.Errorf("resolve: %s", resp.Status)
	}
	resp.Body.Close()
	<-sem
	loc, err := resp.Location()
	if err != nil {
		return err
	}
	size, err := strconv.ParseInt(resp.Header.Get("X-Linked-Size"), 10, 64)
	if err != nil {
		return fmt.Errorf("resolve: bad X-Linked-Size: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	for off := int64(0); off < size; off += rangeSize {
		end := min(off+rangeSize, size)
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			var err error
			for try := 0; try < 3; try++ {
				if err = getRange(ctx, client, loc.String(), f, off, end); err == nil || ctx.Err() != nil {
					break
				}
			}
			if err != nil {
				select {
				case errs <- fmt.Errorf("bytes %d-%d: %w", off, end-1, err):
				default:
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func getRange(ctx context.Context, client *http.Client, u string, f *os.File, off, end int64) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, end-1))
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		return fmt.Errorf("CDN: %s", resp.Status)
	}
	n, err := io.CopyBuffer(io.NewOffsetWriter(f, off), resp.Body, make([]byte, 256<<10))
	if err == nil && n != end-off {
		err = fmt.Errorf("short body: %d of %d bytes", n, end-off)
	}
	return err
}

// fetchCommand reports whether the binary has a `weightfs fetch` (an eager
// downloader) and the flags its help lists.
func (b *bench) fetchCommand() (help string, ok bool) {
	out, err := exec.Command(b.s.bin, "fetch", "--help").CombinedOutput()
	if err != nil || strings.Contains(string(out), "No help topic") {
		return "", false
	}
	return string(out), true
}

// fetchArgs builds a `weightfs fetch` command line from the flags its help
// lists: the config, and a destination folder under whichever name it uses.
func fetchArgs(help, cfg, dst, cache string) ([]string, error) {
	args := []string{"fetch", "--config", cfg}
	for _, name := range []string{"--dest", "--dest-dir", "--output", "--out", "--dir", "--mountpoint", "--target"} {
		if strings.Contains(help, name+" ") || strings.Contains(help, name+"=") {
			args = append(args, name, dst)
			if strings.Contains(help, "--cache-dir") {
				args = append(args, "--cache-dir", cache)
			}
			return args, nil
		}
	}
	return nil, errors.New("weightfs fetch: no destination flag recognised in its --help")
}
