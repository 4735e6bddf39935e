package fetch

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"strconv"
)

// NewHash returns a hash for algo, already fed any prefix the algorithm needs
// (git hashes "blob <size>\x00" before the content). The chunk cache and the
// eager downloader both verify with it, so there is one notion of a checksum.
func NewHash(algo string, size int64) (hash.Hash, error) {
	switch algo {
	case AlgoSHA256:
		return sha256.New(), nil
	case AlgoGitSHA1:
		h := sha1.New()
		io.WriteString(h, "blob "+strconv.FormatInt(size, 10)+"\x00")
		return h, nil
	case AlgoMD5:
		return md5.New(), nil
	case AlgoCRC32C:
		return crc32.New(crc32.MakeTable(crc32.Castagnoli)), nil
	}
	return nil, fmt.Errorf("unknown checksum algorithm %q", algo)
}

// SumHex is h's digest as the origin writes it: hex, and for crc32c the
// big-endian 4 bytes.
func SumHex(algo string, h hash.Hash) string {
	if algo == AlgoCRC32C {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], h.(hash.Hash32).Sum32())
		return hex.EncodeToString(b[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Digest computes the checksum of r (size bytes) with algo, hex encoded.
func Digest(algo string, r io.Reader, size int64) (string, error) {
	h, err := NewHash(algo, size)
	if err != nil {
		return "", err
	}
	buf := make([]byte, 1<<20)
	n, err := io.CopyBuffer(h, io.LimitReader(r, size), buf)
	if err != nil {
		return "", err
	}
	if n != size {
		return "", fmt.Errorf("read %d of %d bytes", n, size)
	}
	return SumHex(algo, h), nil
}
