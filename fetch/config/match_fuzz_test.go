package config

import (
	"strings"
	"testing"
)

// refMatch is fnmatch for patterns without classes, written the plain way:
// '*' any run of runes ('/' included), '?' one rune, anything else itself.
func refMatch(s, p []rune) bool {
	star, mark := -1, 0
	i, j := 0, 0
	for i < len(s) {
		switch {
		case j < len(p) && (p[j] == '?' || p[j] == s[i]) && p[j] != '*':
			i, j = i+1, j+1
		case j < len(p) && p[j] == '*':
			star, mark = j, i
			j++
		case star >= 0:
			mark++
			i, j = mark, star+1
		default:
			return false
		}
	}
	for j < len(p) && p[j] == '*' {
		j++
	}
	return j == len(p)
}

// Patterns come from the config and paths from the origin: Match must
// never panic (fnmatch panics on a pattern it failed to translate), must
// agree with a plain matcher where there are no classes, and must keep the
// allow/ignore rules: ignore wins, an empty allow keeps all, "dir/" means
// "dir/*".
func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"unet/model.safetensors", "unet/"}, {"a.json", "*.json"}, {"a/b/c.json", "*.json"}, {"ab", "a?"},
		{"[", "["}, {"a", "[!]"}, {"a", "[]"}, {"]", "[]]"}, {"-", "[-]"}, {"b", "[z-a]"}, {"b", "[a-c-e]"},
		{"^", "[^]"}, {"\\", "[\\]"}, {"x", "[!x]"}, {"é", "[é-ê]"}, {"\xff", "[\xff]"}, {"a\x00b", "a?b"},
		{"a\nb", "a*b"}, {"..", "*"}, {"a/b", "a"}, {"a", "a/"}, {"", ""}, {"", "*"}, {"a", "***a***"},
		{"x", "[" + strings.Repeat("a-", 200) + "]"}, {"x", strings.Repeat("[!a]", 300)},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, path, pattern string) {
		got := Match(path, []string{pattern}, nil)
		if !strings.ContainsRune(pattern, '[') && !strings.HasSuffix(pattern, "/") {
			if want := refMatch([]rune(path), []rune(pattern)); got != want {
				t.Fatalf("Match(%q, %q) = %v, want %v", path, pattern, got, want)
			}
		}
		if strings.HasSuffix(pattern, "/") && got != fnmatch(path, pattern+"*") {
			t.Fatalf("Match(%q, %q) = %v, unlike %q", path, pattern, got, pattern+"*")
		}
		if !Match(path, nil, nil) || Match(path, []string{pattern}, []string{pattern}) {
			t.Fatalf("path %q pattern %q: an empty allow must keep it and ignore must win", path, pattern)
		}
		if Match(path, nil, []string{pattern}) == got {
			t.Fatalf("path %q pattern %q: ignoring it must drop exactly what allowing it keeps", path, pattern)
		}
		// Any rune but the class syntax, put in a class, is itself.
		for _, r := range pattern {
			if r == '!' || r == ']' || r == '-' {
				continue
			}
			if c := "[" + string(r) + "]"; !fnmatch(string(r), c) || fnmatch(string(r)+"x", c) {
				t.Fatalf("class %q does not match exactly %q", c, string(r))
			}
			break
		}
	})
}
