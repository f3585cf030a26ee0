package bulk

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// TestS3Parts writes a file of several parts through s3Files (streamed
// into a multipart upload) and reads it back whole and by range.
func TestS3Parts(t *testing.T) {
	backend := s3mem.New()
	if err := backend.CreateBucket("bkt"); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(ts.Close)
	ctx := context.Background()
	fs, err := openS3(ctx, S3{URL: ts.URL + "/bkt/p", AccessKey: "k", SecretKey: "s"})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef\n"), (11<<20)/17) // three 5 MiB parts
	w, err := fs.create(ctx, "job/a1/Patient-1.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	for b := data; len(b) > 0; b = b[min(len(b), 64<<10):] {
		if _, err := w.Write(b[:min(len(b), 64<<10)]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := fs.open(ctx, "job/a1/Patient-1.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, data) || c.size() != int64(len(data)) {
		t.Fatalf("read back %d bytes (size %d), want %d: %v", len(got), c.size(), len(data), err)
	}
	if _, err := c.Seek(6<<20, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	part := make([]byte, 100)
	if _, err := io.ReadFull(c, part); err != nil || !bytes.Equal(part, data[6<<20:6<<20+100]) {
		t.Fatalf("seek and read: %v", err)
	}
	c.Close()
	if names, err := fs.list(ctx, ""); err != nil || len(names) != 1 || names[0] != "job" {
		t.Fatalf("list: %v %v", names, err)
	}
	if err := fs.removeAll(ctx, "job"); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.open(ctx, "job/a1/Patient-1.ndjson"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("open after removeAll: %v (want os.ErrNotExist)", err)
	}
}
