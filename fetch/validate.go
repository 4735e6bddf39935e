package fetch

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// A listing is untrusted input: a broken or hostile origin can name any
// size and any path. These checks run on every manifest before anything is
// sized, allocated or mounted from it.

// MaxFileSize is the largest file a listing may name: 64 TiB, above any
// object store's limit (S3 and GCS cap objects at 5 TiB). A bigger size is
// broken or hostile; sizing buffers or bitmaps from it could exhaust memory.
const MaxFileSize = 1 << 46

// MaxNameLen is the longest path segment the kernel looks up (NAME_MAX):
// a longer one would be listed yet never be opened.
const MaxNameLen = 255

// EntryError is one listed file refused by CheckManifest.
type EntryError struct {
	Path   string // as listed (may hold control characters: print it with %q or QuoteName)
	Reason string // why, in words, and what is served instead where that applies
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("refusing listed file %q: %s", e.Path, e.Reason)
}

// CheckManifest removes from m, in place, every file that cannot be served
// as listed, and returns one *EntryError per file removed. The rest of the
// listing is kept in its order: one bad entry never takes a mount down.
//
// Refused: a size below 0 or above MaxFileSize; a path that is not a clean
// relative path (ValidPath) or has a segment over MaxNameLen bytes; a path
// listed twice (the first is kept); and a file whose path is also a
// directory of other listed files ("a" beside "a/b"), which a tree cannot
// hold. There the directory is kept: on object stores such a file is
// usually a zero-byte folder marker, and the directory holds the weights.
func CheckManifest(m *Manifest) []error {
	var errs []error
	refuse := func(p, format string, args ...any) {
		errs = append(errs, &EntryError{Path: p, Reason: fmt.Sprintf(format, args...)})
	}
	kept := m.Files[:0:0]
	first := make(map[string]File, len(m.Files))
	for _, f := range m.Files {
		if reason := pathProblem(f.Path); reason != "" {
			refuse(f.Path, "%s", reason)
			continue
		}
		if f.Size < 0 || f.Size > MaxFileSize {
			refuse(f.Path, "listed size %d is impossible (a file must be 0 to %d bytes, 64 TiB): the listing is broken or hostile", f.Size, int64(MaxFileSize))
			continue
		}
		if prev, dup := first[f.Path]; dup {
			same := "with the same size and checksum"
			if prev.Size != f.Size || prev.Checksum != f.Checksum {
				same = fmt.Sprintf("with different contents (size %d, checksum %s, against %d, %s)", f.Size, f.Checksum, prev.Size, prev.Checksum)
			}
			refuse(f.Path, "listed twice %s; the first listing is served", same)
			continue
		}
		first[f.Path] = f
		kept = append(kept, f)
	}
	// A path that is a directory of kept files, with one example file.
	dirs := make(map[string]string)
	for _, f := range kept {
		for i := strings.LastIndexByte(f.Path, '/'); i > 0; i = strings.LastIndexByte(f.Path[:i], '/') {
			if _, seen := dirs[f.Path[:i]]; seen {
				break // and so are all its parents
			}
			dirs[f.Path[:i]] = f.Path
		}
	}
	out := kept[:0]
	for _, f := range kept {
		if child, isDir := dirs[f.Path]; isDir {
			refuse(f.Path, "the listing also has files under it (such as %q), so it must be a directory; the directory is served, this file is not", child)
			continue
		}
		out = append(out, f)
	}
	m.Files = out
	return errs
}

// pathProblem says why p cannot be a file path of a volume, or "".
func pathProblem(p string) string {
	switch {
	case p == "":
		return "empty path"
	case strings.HasPrefix(p, "/"):
		return "absolute path: it would escape the volume folder"
	case strings.ContainsRune(p, 0):
		return "NUL byte in the path"
	}
	for _, seg := range strings.Split(p, "/") {
		switch {
		case seg == "":
			return "empty path segment (a doubled or trailing '/')"
		case seg == "." || seg == "..":
			return fmt.Sprintf("%q segment: it could escape the volume folder", seg)
		case len(seg) > MaxNameLen:
			return fmt.Sprintf("a path segment of %d bytes: the kernel accepts names of at most %d", len(seg), MaxNameLen)
		}
	}
	if !ValidPath(p) { // the two must agree; this catches a rule added to one only
		return "not a clean relative path"
	}
	return ""
}

// AddSizes is a+b for non-negative sizes, saturating at math.MaxInt64
// instead of wrapping negative.
func AddSizes(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// QuoteName makes a remote name safe to print on a terminal. A name of
// printable characters, without '"' or '\', is returned as is; any other is
// returned Go-quoted ("a\nb", "\x1b[2J", "\xff"), so control characters
// (newline, ESC, DEL, C1), invalid UTF-8 and invisible format characters
// never reach the terminal raw, and a quoted name cannot pass for a plain one.
func QuoteName(s string) string {
	if s == "" {
		return `""`
	}
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || r == '"' || r == '\\' || !strconv.IsPrint(r) {
			return strconv.Quote(s)
		}
		i += n
	}
	return s
}

// EscapeControl makes a message (an error that may embed remote names)
// safe to print on a terminal: control characters other than newline and
// tab, DEL, C1, invisible format characters and invalid UTF-8 are written
// as Go escapes (\x1b, \u0085, \xff). Everything else is left as is.
func EscapeControl(s string) string {
	if plainMessage(s) {
		return s // the common case costs no copy
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case printableInMessage(r):
			b.WriteString(s[i : i+n])
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += n
	}
	return b.String()
}

func printableInMessage(r rune) bool { return r == '\n' || r == '\t' || strconv.IsPrint(r) }

// plainMessage reports whether EscapeControl leaves s unchanged.
func plainMessage(s string) bool {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || !printableInMessage(r) {
			return false
		}
		i += n
	}
	return true
}
