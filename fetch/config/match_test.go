package config

import "testing"

// fnmatchCases were checked against CPython's fnmatch.fnmatchcase (3.11),
// which huggingface_hub's filter_repo_objects uses on POSIX.
var fnmatchCases = []struct {
	pattern, name string
	want          bool
}{
	// '*' crosses '/', literal dots stay literal.
	{"*.safetensors", "text_encoder/model.safetensors", true},
	{"*.safetensors", "model.safetensors", true},
	{"*.safetensors", "model.safetensors.index.json", false},
	{"*.json", "config.json", true},
	{"*.json", "configxjson", false},
	{"*.json", "a/b/c.json", true},
	{"config.json", "config.json", true},
	{"config.json", "sub/config.json", false},
	{"unet/*", "unet/x/y.bin", true},
	{"unet/*", "unet", false},
	{"unet/*", "unetx/a", false},
	{"*", "", true},
	{"*", "a\nb", true},
	{"a*b*c", "a/b/c", true},
	{"**", "x/y", true},
	{"*.fp16.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors", true},
	{"*.fp16.safetensors", "unet/diffusion_pytorch_model.safetensors", false},
	{"sd_xl_base_1.0.safetensors", "sd_xl_base_1.0.safetensors", true},
	{"sd_xl_base_1.0.safetensors", "sd_xl_base_1x0.safetensors", false},
	// '?' is one character (a code point), '/' included.
	{"?", "a", true},
	{"?", "ab", false},
	{"?", "", false},
	{"?", "/", true},
	{"?", "模", true},
	{"a?c", "a/c", true},
	// Regexp metacharacters in names are literal.
	{"a+b(c).txt", "a+b(c).txt", true},
	{"a+b(c).txt", "aab(c).txt", false},
	{"$^.|{1}", "$^.|{1}", true},
	{"x{2}", "xx", false},
	{`\*`, `\abc`, true},
	{`\*`, "*", false},
	// Classes.
	{"[!a]*", "bcd", true},
	{"[!a]*", "abc", false},
	{"[!a]*", "", false},
	{"[!a]*", "/x", true},
	{"[!.]*", "x", true},
	{"[!.]*", ".hidden", false},
	{"[0-9]*.bin", "3.bin", true},
	{"[0-9]*.bin", "x.bin", false},
	{"[a-c]", "b", true},
	{"[a-c]", "d", false},
	{"[a-c]", "-", false},
	{"[^a]", "^", true},
	{"[^a]", "b", false},
	{"[^a]", "a", true},
	{"[[]", "[", true},
	{`[\]`, `\`, true},
	{`[\]`, "]", false},
	{"[a&&b]", "&", true},
	{"[a~~b]", "~", true},
	{"[a||b]", "|", true},
	// Unclosed '[' is literal; ']' first in a class is a member.
	{"[", "[", true},
	{"[a", "[a", true},
	{"a[", "a[", true},
	{"a]", "a]", true},
	{"[]]", "]", true},
	{"[]]", "a", false},
	{"[!]]", "a", true},
	{"[!]]", "]", false},
	{"[!]", "[!]", true},
	{"[ab]]", "a]", true},
	{"[ab]]", "a", false},
	{"[]-a]", "]", true},
	{"[]-a]", "^", true},
	{"[]-a]", "b", false},
	{"[!]-a]", "b", true},
	{"[!]-a]", "^", false},
	// '-' at the edges, chained and empty ranges, as CPython resolves them.
	{"[a-]", "-", true},
	{"[a-]", "a", true},
	{"[a-]", "b", false},
	{"[-a]", "-", true},
	{"[-a]", "b", false},
	{"[!-a]", "b", true},
	{"[!-a]", "-", false},
	{"a[b-]c", "a-c", true},
	{"a[!b-]c", "a-c", false},
	{"a[!b-]c", "axc", true},
	{"[a-c-e]", "b", true},
	{"[a-c-e]", "-", true},
	{"[a-c-e]", "d", false},
	{"[a-c-e]", "e", true},
	{"[a-b-c-d]", "c", true},
	{"[a-b-c-d]", "-", true},
	{"[a-b-c-d]", "d", true},
	{"[a-a]", "a", true},
	{"[b-a]", "a", false},
	{"[z-a]", "z", false},
	{"[z-a]", "-", false},
	{"[z-a]", "a", false},
	{"[!z-a]", "q", true},
	{"[!z-a]", "/", true},
	{"[z-a-c]", "-", true},
	{"[z-a-c]", "c", true},
	{"[z-a-c]", "b", false},
	{"[!z-a-c]", "b", true},
	{"[!z-a-c]", "-", false},
	{"[b-a-c-d]", "c", true},
	{"[b-a-c-d]", "b", false},
	{"[b-a-c-d]", "-", true},
	{"[c-a-b]", "-", true},
	{"[c-a-b]", "b", true},
	{"[--/]", ".", true},
	{"[--/]", "-", true},
	{"[---]", "-", true},
	{"[---]", ".", false},
	// Case-sensitive (POSIX normcase is the identity).
	{"*.JSON", "a.json", false},
	{"*.json", "A.JSON", false},
	{"Model.bin", "model.bin", false},
	// Unicode and spaces.
	{"模型/*.bin", "模型/a.bin", true},
	{"模型/*.bin", "模型/a.txt", false},
	{"[模型]", "型", true},
	{"[α-ω]", "λ", true},
	{"[α-ω]", "a", false},
	{"my model/*.bin", "my model/x.bin", true},
	{"my model/*.bin", "my_model/x.bin", false},
	{"* *", "a b", true},
	{"", "", true},
	{"", "a", false},
}

func TestFnmatchLikePython(t *testing.T) {
	for _, c := range fnmatchCases {
		if got := fnmatch(c.name, c.pattern); got != c.want {
			t.Errorf("fnmatch(%q, %q) = %v, want %v (regexp %s)", c.name, c.pattern, got, c.want, translate(c.pattern))
		}
	}
}

func TestMatch(t *testing.T) {
	sdxl := []string{"*.json", "*.fp16.safetensors", "sd_xl_base_1.0.safetensors"}
	cases := []struct {
		name          string
		path          string
		allow, ignore []string
		want          bool
	}{
		{"no patterns keep all", "any/file.bin", nil, nil, true},
		{"empty allow keeps all", "a.bin", []string{}, nil, true},
		{"allow star crosses dirs", "text_encoder/model.safetensors", []string{"*.safetensors"}, nil, true},
		{"allow misses", "model.bin", []string{"*.safetensors"}, nil, false},
		{"folder pattern", "unet/x/y.bin", []string{"unet/"}, nil, true},
		{"folder pattern top file", "unet/config.json", []string{"unet/"}, nil, true},
		{"folder pattern is not a prefix", "unetx/a.bin", []string{"unet/"}, nil, false},
		{"folder pattern not the file itself", "unet", []string{"unet/"}, nil, false},
		{"ignore wins over allow", "model.onnx", []string{"*"}, []string{"*.onnx"}, false},
		{"ignore only", "onnx/model.onnx", nil, []string{"*.onnx"}, false},
		{"ignore only keeps others", "model.safetensors", nil, []string{"*.onnx"}, true},
		{"ignore folder", "onnx/model.bin", nil, []string{"onnx/"}, false},
		{"sdxl json", "vae/config.json", sdxl, nil, true},
		{"sdxl fp16", "unet/diffusion_pytorch_model.fp16.safetensors", sdxl, nil, true},
		{"sdxl full weights", "unet/diffusion_pytorch_model.safetensors", sdxl, nil, false},
		{"sdxl literal name", "sd_xl_base_1.0.safetensors", sdxl, nil, true},
		{"sdxl literal name only at top", "x/sd_xl_base_1.0.safetensors", sdxl, nil, false},
		{"any allow of several", "b.txt", []string{"a.*", "b.*"}, nil, true},
		{"chains ignore", "llama/model.pth", nil, []string{"*.pth", "*.onnx"}, false},
	}
	for _, c := range cases {
		if got := Match(c.path, c.allow, c.ignore); got != c.want {
			t.Errorf("%s: Match(%q, %q, %q) = %v, want %v", c.name, c.path, c.allow, c.ignore, got, c.want)
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	allow := []string{"*.json", "*.fp16.safetensors", "sd_xl_base_1.0.safetensors"}
	for b.Loop() {
		Match("text_encoder_2/model.fp16.safetensors", allow, []string{"*.onnx"})
	}
}
