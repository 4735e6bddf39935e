package config

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
)

// Match reports whether a file at path (relative to the repo or prefix,
// '/'-separated) is kept by allow and ignore, with the semantics of the
// Hugging Face client's filter_repo_objects: a pattern ending in '/' gets a
// '*' appended (so "unet/" keeps everything under unet/), an empty allow list
// keeps everything, and a path matching any ignore pattern is dropped even
// when an allow pattern matches it. Matching is Python's fnmatch on POSIX:
// case-sensitive, '*' also matches '/', '?' one character, [...] and [!...]
// classes.
func Match(path string, allow, ignore []string) bool {
	if len(allow) > 0 && !matchAny(path, allow) {
		return false
	}
	return !matchAny(path, ignore)
}

func matchAny(path string, patterns []string) bool {
	for _, p := range patterns {
		if strings.HasSuffix(p, "/") {
			p += "*"
		}
		if fnmatch(path, p) {
			return true
		}
	}
	return false
}

// compiled caches translated patterns: the same handful of patterns is
// matched against every file of every listing. The set is bounded by the
// config, so the cache is never pruned.
var compiled sync.Map // pattern string -> *regexp.Regexp

// fnmatch is Python's fnmatch.fnmatchcase(name, pattern).
func fnmatch(name, pattern string) bool {
	if re, ok := compiled.Load(pattern); ok {
		return re.(*regexp.Regexp).MatchString(name)
	}
	re, err := regexp.Compile(translate(pattern))
	if err != nil { // translate escapes every literal; this is a bug if reached
		panic(fmt.Sprintf("config: pattern %q: %v", pattern, err))
	}
	compiled.Store(pattern, re)
	return re.MatchString(name)
}

// translate turns a shell pattern into an anchored Go regexp, following
// CPython's fnmatch.translate rule for rule (including its handling of '-'
// in classes and of empty ranges), so a pattern selects here exactly the
// files it selects for snapshot_download.
func translate(pattern string) string {
	p := []rune(pattern)
	var b strings.Builder
	b.WriteString(`^(?s:`)
	star := false
	for i := 0; i < len(p); {
		c := p[i]
		i++
		if c == '*' {
			if !star { // consecutive stars are one star
				b.WriteString(`.*`)
			}
			star = true
			continue
		}
		star = false
		switch c {
		case '?':
			b.WriteString(`.`)
		case '[':
			class, next, ok := translateClass(p, i)
			if !ok { // no closing ']': the '[' is literal
				b.WriteString(`\[`)
				continue
			}
			b.WriteString(class)
			i = next
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString(`)\z`)
	return b.String()
}

// translateClass translates the class whose body starts at p[i] (just after
// '['). It returns the regexp, the index after the closing ']', and false
// when the class is not closed.
func translateClass(p []rune, i int) (string, int, bool) {
	n := len(p)
	j := i
	if j < n && p[j] == '!' {
		j++
	}
	if j < n && p[j] == ']' { // a ']' first is a member, not the end
		j++
	}
	for j < n && p[j] != ']' {
		j++
	}
	if j >= n {
		return "", i, false
	}
	// chunks are runs of literal members; between two chunks is a range
	// from the last rune of the first to the first rune of the second.
	var chunks [][]rune
	if !containsRune(p[i:j], '-') {
		chunks = [][]rune{clone(p[i:j])}
	} else {
		start, k := i, i+1
		if p[i] == '!' {
			k = i + 2
		}
		for {
			k = indexRune(p, '-', k, j)
			if k < 0 {
				break
			}
			chunks = append(chunks, clone(p[start:k]))
			start = k + 1
			k += 3
		}
		if start < j {
			chunks = append(chunks, clone(p[start:j]))
		} else { // a trailing '-' is a member
			last := len(chunks) - 1
			chunks[last] = append(chunks[last], '-')
		}
		// Drop empty ranges (z-a) with both their ends, as CPython does.
		for k := len(chunks) - 1; k > 0; k-- {
			prev := chunks[k-1]
			if prev[len(prev)-1] > chunks[k][0] {
				merged := append(clone(prev[:len(prev)-1]), chunks[k][1:]...)
				chunks[k-1] = merged
				chunks = append(chunks[:k], chunks[k+1:]...)
			}
		}
	}
	next := j + 1
	switch {
	case len(chunks) == 1 && len(chunks[0]) == 0:
		return `[^\x00-\x{10FFFF}]`, next, true // empty class: never matches
	case len(chunks) == 1 && len(chunks[0]) == 1 && chunks[0][0] == '!':
		return `.`, next, true // negated empty class: any character
	}
	var b strings.Builder
	b.WriteByte('[')
	if len(chunks[0]) > 0 && chunks[0][0] == '!' {
		b.WriteByte('^')
		chunks[0] = chunks[0][1:]
	}
	for k, chunk := range chunks {
		for m, r := range chunk {
			if k > 0 && m == 0 {
				b.WriteByte('-')
			}
			fmt.Fprintf(&b, `\x{%x}`, r)
		}
	}
	b.WriteByte(']')
	return b.String(), next, true
}

func containsRune(s []rune, r rune) bool { return indexRune(s, r, 0, len(s)) >= 0 }

// indexRune is Python's s.find(r, from, to).
func indexRune(s []rune, r rune, from, to int) int {
	for k := from; k < to && k < len(s); k++ {
		if s[k] == r {
			return k
		}
	}
	return -1
}

func clone(s []rune) []rune { return append([]rune(nil), s...) }
