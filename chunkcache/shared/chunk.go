package shared

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cespare/xxhash/v2"
)

// A shared chunk is a 24-byte header, then the bytes:
//
//	magic "WFSCHK1\n" | length uint64 | digest uint64 (little-endian)
//
// The digest is xxhash64 over the object's name and then the bytes, so a
// flipped, torn or misplaced object (a chunk of another file renamed into
// this name) fails it. It guards against the store, not against a hostile
// writer: every node still checks each whole file against its origin
// checksum, and xxhash costs a few percent of a sha256.
const (
	headerLen  = 24
	chunkMagic = "WFSCHK1\n"
)

// ErrCorrupt marks a shared chunk whose framing or digest is wrong.
var ErrCorrupt = errors.New("shared chunk failed its digest")

func chunkDigest(name string, data []byte) uint64 {
	d := xxhash.New()
	d.WriteString(name)
	d.Write(data)
	return d.Sum64()
}

func chunkHeader(name string, data []byte) []byte {
	h := make([]byte, headerLen)
	copy(h, chunkMagic)
	binary.LittleEndian.PutUint64(h[8:], uint64(len(data)))
	binary.LittleEndian.PutUint64(h[16:], chunkDigest(name, data))
	return h
}

// readChunk fills buf with the chunk stored as name, checking its length
// and digest before returning: a caller never sees a byte of a chunk that
// fails. The size the store reports is checked before anything is read, so
// a hostile listing cannot make it allocate or read unbounded.
func readChunk(ctx context.Context, b Blobs, name string, buf []byte) error {
	r, size, err := b.Open(ctx, name)
	if err != nil {
		return err
	}
	defer r.Close()
	if size != int64(headerLen+len(buf)) {
		return fmt.Errorf("%s: %d bytes, want %d: %w", name, size, headerLen+len(buf), ErrCorrupt)
	}
	var h [headerLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return fmt.Errorf("%s: reading header: %w", name, err)
	}
	if string(h[:8]) != chunkMagic || binary.LittleEndian.Uint64(h[8:]) != uint64(len(buf)) {
		return fmt.Errorf("%s: bad header: %w", name, ErrCorrupt)
	}
	if _, err := io.ReadFull(r, buf); err != nil {
		return fmt.Errorf("%s: reading: %w", name, err)
	}
	if chunkDigest(name, buf) != binary.LittleEndian.Uint64(h[16:]) {
		return fmt.Errorf("%s: %w", name, ErrCorrupt)
	}
	return nil
}

// writeChunk stores buf as name unless it is there already: chunks are
// content-addressed, so whoever wrote it first wrote the same bytes.
func writeChunk(ctx context.Context, b Blobs, name string, buf []byte) error {
	err := b.Put(ctx, name, [][]byte{chunkHeader(name, buf), buf}, true)
	if errors.Is(err, ErrExists) {
		return nil
	}
	return err
}
