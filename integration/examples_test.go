package integration

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/weightfs/weightfs/fetch/config"
	"github.com/weightfs/weightfs/integration/hubemu"
	"github.com/weightfs/weightfs/integration/modelgen"
)

// TestExampleConfigsParse loads every examples/*/config.yaml the way the
// daemon does and checks what each one promises its reader.
func TestExampleConfigsParse(t *testing.T) {
	type want struct {
		repo, folder   string
		useVolume      bool
		kind, secret   string
		allow, ignore  []string
		revisionPinned bool
	}
	cases := map[string][]want{
		"sdxl": {
			{"madebyollin/sdxl-vae-fp16-fix", "sdxl-vae-fp16", true, "hf", "hf_access_token", []string{"config.json", "diffusion_pytorch_model.safetensors"}, nil, true},
			{"stabilityai/stable-diffusion-xl-base-1.0", "stable-diffusion-xl-base", true, "hf", "hf_access_token", []string{"*.json", "*.fp16.safetensors", "sd_xl_base_1.0.safetensors"}, nil, true},
			{"stabilityai/stable-diffusion-xl-refiner-1.0", "stable-diffusion-xl-refiner", true, "hf", "hf_access_token", []string{"*.json", "*.fp16.safetensors", "sd_xl_refiner_1.0.safetensors"}, nil, true},
		},
		"jina-tei":           {{"jinaai/jina-embeddings-v2-base-code", "my_jina", true, "hf", "hf_access_token", nil, []string{"*.onnx"}, true}},
		"llama-3.2-1b-gated": {{"meta-llama/Llama-3.2-1B-Instruct", "llama_mini", true, "hf", "hf_access_token", nil, []string{"*.pth", "*.onnx"}, true}},
		"s3":                 {{"s3://my-models-bucket/llama-3.2-1b/", "my-model", true, "s3", "aws_creds", []string{"*.json", "*.safetensors"}, nil, false}},
		"gcs":                {{"gs://my-models-bucket/sdxl-finetune", "my-model", true, "gcs", "gcs_sa", nil, []string{"*.ckpt", "*.bin"}, false}},
		"sdxl-baked":         {{"madebyollin/sdxl-vae-fp16-fix", "", false, "hf", "hf_access_token", []string{"config.json", "diffusion_pytorch_model.safetensors"}, nil, true}},
	}
	found, err := filepath.Glob("../examples/*/config.yaml")
	if err != nil || len(found) == 0 {
		t.Fatalf("no example configs: %v", err)
	}
	for _, p := range found {
		name := filepath.Base(filepath.Dir(p))
		t.Run(name, func(t *testing.T) {
			wants, ok := cases[name]
			if !ok {
				t.Fatalf("%s has no expectations here: add them", p)
			}
			entries, err := config.Load(p)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != len(wants) {
				t.Fatalf("%d entries, want %d", len(entries), len(wants))
			}
			for i, w := range wants {
				e := entries[i]
				if e.RepoID != w.repo || e.VolumeFolder != w.folder || e.UseVolume != w.useVolume || e.Kind != w.kind || e.SecretName != w.secret ||
					!slices.Equal(e.AllowPatterns, w.allow) || !slices.Equal(e.IgnorePatterns, w.ignore) || config.IsCommit(e.Revision) != w.revisionPinned {
					t.Errorf("entry %d = %+v\nwant %+v", i, e, w)
				}
			}
			for _, w := range config.Warnings(entries) {
				t.Errorf("example config warns: %s", w)
			}
		})
	}
	for name := range cases {
		if !slices.Contains(found, filepath.Join("..", "examples", name, "config.yaml")) {
			t.Errorf("examples/%s/config.yaml is missing", name)
		}
	}
}

// TestExampleK8sSidecarManifest decodes examples/k8s-sidecar.yaml and checks
// what makes a FUSE sidecar work: privilege, mount propagation both ways,
// --allow-other, the /readyz probe on a non-loopback address, the secret at
// /secrets, a preStop hook, and a config the daemon accepts.
func TestExampleK8sSidecarManifest(t *testing.T) {
	data, err := os.ReadFile("../examples/k8s-sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type probe struct {
		HTTPGet *struct {
			Path string `yaml:"path"`
			Port int    `yaml:"port"`
		} `yaml:"httpGet"`
	}
	type mountT struct {
		Name        string `yaml:"name"`
		MountPath   string `yaml:"mountPath"`
		Propagation string `yaml:"mountPropagation"`
	}
	type container struct {
		Name            string   `yaml:"name"`
		Args            []string `yaml:"args"`
		RestartPolicy   string   `yaml:"restartPolicy"`
		SecurityContext struct {
			Privileged bool `yaml:"privileged"`
		} `yaml:"securityContext"`
		ReadinessProbe *probe    `yaml:"readinessProbe"`
		StartupProbe   *probe    `yaml:"startupProbe"`
		VolumeMounts   []mountT  `yaml:"volumeMounts"`
		Lifecycle      yaml.Node `yaml:"lifecycle"`
	}
	type doc struct {
		Kind string            `yaml:"kind"`
		Data map[string]string `yaml:"data"`
		Spec struct {
			Template struct {
				Spec struct {
					InitContainers []container `yaml:"initContainers"`
					Containers     []container `yaml:"containers"`
					Volumes        []struct {
						Name   string `yaml:"name"`
						Secret *struct {
							Items []struct {
								Key string `yaml:"key"`
							} `yaml:"items"`
						} `yaml:"secret"`
					} `yaml:"volumes"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	var docs []doc
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(false)
	for {
		var d doc
		if err := dec.Decode(&d); err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatal(err)
		}
		docs = append(docs, d)
	}
	var deploy *doc
	for i := range docs {
		switch docs[i].Kind {
		case "Deployment":
			deploy = &docs[i]
		case "ConfigMap":
			entries, err := config.Parse([]byte(docs[i].Data["config.yaml"]), "k8s-sidecar.yaml ConfigMap")
			if err != nil || len(entries) == 0 || !entries[0].UseVolume {
				t.Errorf("ConfigMap config.yaml: %v %+v", err, entries)
			}
		}
	}
	if deploy == nil {
		t.Fatal("no Deployment")
	}
	spec := deploy.Spec.Template.Spec
	var side, app *container
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		if slices.Contains(c.Args, "mount") {
			side = &c
		} else if app == nil && c.RestartPolicy == "" {
			app = &c
		}
	}
	if side == nil || app == nil {
		t.Fatalf("want a weightfs sidecar and an app container: %+v", spec)
	}
	mountOf := func(c *container, path string) mountT {
		for _, m := range c.VolumeMounts {
			if m.MountPath == path {
				return m
			}
		}
		return mountT{}
	}
	sm, am := mountOf(side, "/app/model_cache"), mountOf(app, "/app/model_cache")
	if sm.Propagation != "Bidirectional" || am.Propagation != "HostToContainer" || sm.Name == "" || sm.Name != am.Name {
		t.Errorf("/app/model_cache mounts: sidecar %+v, app %+v", sm, am)
	}
	if !side.SecurityContext.Privileged {
		t.Error("the sidecar is not privileged (Bidirectional propagation requires it)")
	}
	args := strings.Join(side.Args, " ")
	for _, w := range []string{"--allow-other", "--mountpoint=/app/model_cache", "--secrets-dir=/secrets", "--control-addr=0.0.0.0:9464"} {
		if !strings.Contains(args, w) {
			t.Errorf("sidecar args lack %s: %s", w, args)
		}
	}
	for name, p := range map[string]*probe{"readinessProbe": side.ReadinessProbe, "startupProbe": side.StartupProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.HTTPGet.Port != 9464 {
			t.Errorf("sidecar %s is not httpGet /readyz on 9464: %+v", name, p)
		}
	}
	if side.RestartPolicy != "Always" {
		t.Error("the sidecar is not a native sidecar (initContainers, restartPolicy: Always)")
	}
	if pre := side.Lifecycle; pre.Kind == 0 || !strings.Contains(fmt.Sprint(nodeKeys(&pre)), "preStop") {
		t.Error("the sidecar has no preStop hook")
	}
	secretVol := mountOf(side, "/secrets").Name
	ok := false
	for _, v := range spec.Volumes {
		if v.Name == secretVol && v.Secret != nil && len(v.Secret.Items) > 0 && v.Secret.Items[0].Key == "hf_access_token" {
			ok = true
		}
	}
	if !ok {
		t.Errorf("no secret volume with hf_access_token mounted at /secrets (volume %q)", secretVol)
	}
}

func nodeKeys(n *yaml.Node) []string {
	var out []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		out = append(out, n.Content[i].Value)
	}
	return out
}

// TestExampleDockerfileCopiesExist checks that every COPY source of the
// Dockerfile exists in the build context.
func TestExampleDockerfileCopiesExist(t *testing.T) {
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var entrypoint, static bool
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "COPY" || strings.HasPrefix(f[1], "--from") {
			if strings.Contains(line, "CGO_ENABLED=0") {
				static = true
			}
			continue
		}
		for _, src := range f[1 : len(f)-1] {
			if _, err := os.Stat(filepath.Join("..", src)); err != nil {
				t.Errorf("COPY %s: %v", src, err)
			}
			entrypoint = entrypoint || src == "examples/entrypoint.sh"
		}
	}
	if !entrypoint || !static {
		t.Errorf("the Dockerfile should build with CGO_ENABLED=0 (%v) and ship examples/entrypoint.sh (%v)", static, entrypoint)
	}
}

func TestExampleEntrypointSyntax(t *testing.T) {
	if out, err := exec.Command("bash", "-n", "../examples/entrypoint.sh").CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	if info, err := os.Stat("../examples/entrypoint.sh"); err != nil || info.Mode()&0o111 == 0 {
		t.Fatalf("entrypoint.sh is not executable: %v", err)
	}
}

// entrypointRun is examples/entrypoint.sh started against a Hub emulator.
type entrypointRun struct {
	cmd    *exec.Cmd
	out    string // path of the combined output: a file, so a writer never blocks on this process
	exited chan struct{}
	mp     string
}

func (r *entrypointRun) output() string {
	b, _ := os.ReadFile(r.out)
	return string(b)
}

// startEntrypoint runs the entrypoint with the mountpoint mp and the server
// command server.
func startEntrypoint(t *testing.T, hubURL, cfg, mp string, env []string, server ...string) *entrypointRun {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0") // a free port for the control endpoint
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r := &entrypointRun{out: filepath.Join(t.TempDir(), "entrypoint.log"), exited: make(chan struct{}), mp: mp}
	outFile, err := os.Create(r.out)
	if err != nil {
		t.Fatal(err)
	}
	defer outFile.Close() // the child keeps its own descriptor
	r.cmd = exec.Command("../examples/entrypoint.sh", server...)
	r.cmd.Env = append(os.Environ(), "HF_TOKEN=", "HUGGING_FACE_HUB_TOKEN=", "HF_ENDPOINT="+hubURL,
		"WEIGHTFS_BIN="+weightfsBin, "WEIGHTFS_CONFIG="+writeConfig(t, cfg), "WEIGHTFS_MOUNTPOINT="+r.mp,
		"WEIGHTFS_CONTROL_ADDR="+addr, "WEIGHTFS_READY_TIMEOUT=30",
		"WEIGHTFS_ARGS=--cache-dir "+t.TempDir()+" --secrets-dir "+filepath.Join(t.TempDir(), "none"))
	r.cmd.Env = append(r.cmd.Env, env...)
	r.cmd.Stdout, r.cmd.Stderr = outFile, outFile
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.cmd.Wait(); close(r.exited) }()
	t.Cleanup(func() {
		select {
		case <-r.exited:
		default:
			r.cmd.Process.Kill()
			<-r.exited
		}
		syscall.Unmount(r.mp, syscall.MNT_DETACH)
	})
	return r
}

// waitExit waits for the entrypoint to exit and returns its status.
func (r *entrypointRun) waitExit(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-r.exited:
	case <-time.After(within):
		t.Fatalf("the entrypoint did not exit within %s:\n%s", within, r.output())
	}
	return r.cmd.ProcessState.ExitCode()
}

func isMounted(t *testing.T, mp string) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == mp {
			return true
		}
	}
	return false
}

// TestExampleEntrypointRunsServerAndUnmountsOnSIGTERM runs the container
// entrypoint for real: mount, readiness, server start, SIGTERM forwarding,
// unmount, and the failure paths.
func TestExampleEntrypointRunsServerAndUnmountsOnSIGTERM(t *testing.T) {
	hub := newHub(t, hubemu.Options{})
	origin := llmRepo(t, hub, 4<<20, 1)
	want, _ := modelgen.SHA256File(filepath.Join(origin, "model.safetensors"))

	t.Run("SIGTERM stops the server, then unmounts", func(t *testing.T) {
		done := filepath.Join(t.TempDir(), "server-read")
		mp := t.TempDir()
		// The "server" reads a weight file through the mount, then serves
		// (sleeps) until it is told to stop.
		r := startEntrypoint(t, hub.URL(), llmConfig, mp, nil,
			"bash", "-c", `sha256sum "$0/llm/model.safetensors" > "$1.tmp" && mv "$1.tmp" "$1"; trap 'echo server got SIGTERM; exit 0' TERM; while :; do sleep 0.1; done`,
			mp, done)
		var got []byte
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if got, _ = os.ReadFile(done); len(got) > 0 {
				break
			}
			select {
			case <-r.exited:
				t.Fatalf("the entrypoint exited early:\n%s", r.output())
			default:
			}
		}
		if !strings.HasPrefix(string(got), want) {
			t.Fatalf("the server read %q through the mount, want sha256 %s\n%s", got, want, r.output())
		}
		r.cmd.Process.Signal(syscall.SIGTERM)
		code := r.waitExit(t, 20*time.Second)
		out := r.output()
		if code != 0 || !strings.Contains(out, "server got SIGTERM") || !strings.Contains(out, "msg=unmounted") {
			t.Errorf("exit %d; want 0, the server told first and the daemon unmounted:\n%s", code, out)
		}
		if strings.Index(out, "server got SIGTERM") > strings.Index(out, "msg=unmounted") {
			t.Errorf("the daemon unmounted before the server stopped:\n%s", out)
		}
		if isMounted(t, r.mp) {
			t.Error("the mountpoint is still mounted")
		}
	})

	t.Run("server exit status is kept, and weightfs wait gates it", func(t *testing.T) {
		r := startEntrypoint(t, hub.URL(), llmConfig, t.TempDir(), []string{"WEIGHTFS_WAIT_ALL=1", "WEIGHTFS_WAIT_TIMEOUT=30s"},
			"bash", "-c", "echo server started; exit 3")
		code := r.waitExit(t, 40*time.Second)
		out := r.output()
		if code != 3 || !strings.Contains(out, "msg=unmounted") {
			t.Errorf("exit %d, want the server's 3 and an unmount:\n%s", code, out)
		}
		if w, s := strings.Index(out, "cached and verified"), strings.Index(out, "server started"); w < 0 || s < w {
			t.Errorf("the server did not start after weightfs wait:\n%s", out)
		}
		if isMounted(t, r.mp) {
			t.Error("the mountpoint is still mounted")
		}
	})

	t.Run("a daemon that cannot start fails the container", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "server-started")
		r := startEntrypoint(t, hub.URL(), strings.Replace(llmConfig, "acme/llm", "acme/nope", 1), t.TempDir(), nil,
			"touch", marker)
		code := r.waitExit(t, 30*time.Second)
		out := r.output()
		if code == 0 || !strings.Contains(out, "acme/nope") || !strings.Contains(out, "before its listing was served") {
			t.Errorf("exit %d; want a failure naming the repo:\n%s", code, out)
		}
		if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
			t.Error("the server was started although the mount failed")
		}
	})
}
