package bulk

import (
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// files stores the output of the jobs under names "JOB/aN/FILE": a folder
// (dirFiles) or an S3-compatible bucket (s3Files). Downloads are always
// served by Lapis from it, so authorization stays with Lapis.
type files interface {
	// mkdir makes the folder dir (a no-op where folders are name
	// prefixes only).
	mkdir(dir string) error
	// create starts writing a file; Close makes it durable and visible.
	create(ctx context.Context, name string) (io.WriteCloser, error)
	// open opens a file for reading (os.ErrNotExist when absent).
	open(ctx context.Context, name string) (content, error)
	// removeAll removes every file whose name starts with prefix+"/".
	removeAll(ctx context.Context, prefix string) error
	// list returns the first name segments under prefix ("" for the job
	// ids, "JOB" for its attempts).
	list(ctx context.Context, prefix string) ([]string, error)
}

// content is an opened file: what http.ServeContent reads.
type content interface {
	io.ReadSeekCloser
	modTime() time.Time
	size() int64
}

// dirFiles keeps the files in a folder.
type dirFiles struct{ dir string }

func (d dirFiles) path(name string) string { return filepath.Join(d.dir, filepath.FromSlash(name)) }

func (d dirFiles) mkdir(dir string) error { return os.MkdirAll(d.path(dir), 0o700) }

func (d dirFiles) create(_ context.Context, name string) (io.WriteCloser, error) {
	p := d.path(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	return syncedFile{f}, nil
}

// syncedFile is a file synced to disk before it is closed.
type syncedFile struct{ *os.File }

func (f syncedFile) Close() error { return errors.Join(f.Sync(), f.File.Close()) }

func (d dirFiles) open(_ context.Context, name string) (content, error) {
	f, err := os.Open(d.path(name))
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &dirContent{File: f, st: st}, nil
}

type dirContent struct {
	*os.File
	st os.FileInfo
}

func (c *dirContent) modTime() time.Time { return c.st.ModTime() }
func (c *dirContent) size() int64        { return c.st.Size() }

func (d dirFiles) removeAll(_ context.Context, prefix string) error {
	return os.RemoveAll(d.path(prefix))
}

func (d dirFiles) list(_ context.Context, prefix string) ([]string, error) {
	entries, err := os.ReadDir(d.path(prefix))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, err
}

// S3 configures S3-compatible object storage of the output files.
type S3 struct {
	// URL is http(s)://ENDPOINT/BUCKET[/PREFIX] (path-style addressing).
	URL string
	// AccessKey and SecretKey are the credentials (from the environment).
	AccessKey, SecretKey string
	// PartSize is the size of the parts a file is uploaded in (default
	// and minimum 5 MiB): the memory one file being written holds.
	PartSize uint64
}

// s3Files keeps the files in a bucket, under a prefix.
type s3Files struct {
	c        *minio.Client
	bucket   string
	prefix   string // "" or ending in "/"
	partSize uint64
}

// openS3 connects to the bucket of cfg (which must exist).
func openS3(ctx context.Context, cfg S3) (*s3Files, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("bulk: the S3 URL must be http(s)://ENDPOINT/BUCKET[/PREFIX]")
	}
	bucket, prefix, _ := strings.Cut(strings.Trim(u.Path, "/"), "/")
	if bucket == "" {
		return nil, errors.New("bulk: the S3 URL names no bucket")
	}
	if prefix != "" {
		prefix += "/"
	}
	c, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: u.Scheme == "https", BucketLookup: minio.BucketLookupPath})
	if err != nil {
		return nil, err
	}
	ok, err := c.BucketExists(ctx, bucket)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errors.New("bulk: the S3 bucket " + bucket + " does not exist")
	}
	return &s3Files{c: c, bucket: bucket, prefix: prefix, partSize: max(cfg.PartSize, 5<<20)}, nil
}

// s3Upload streams a file into a multipart upload of parts of partSize.
type s3Upload struct {
	pw   *io.PipeWriter
	done chan error
}

func (s *s3Files) mkdir(string) error { return nil }

func (s *s3Files) create(ctx context.Context, name string) (io.WriteCloser, error) {
	pr, pw := io.Pipe()
	up := &s3Upload{pw: pw, done: make(chan error, 1)}
	go func() {
		_, err := s.c.PutObject(ctx, s.bucket, s.prefix+name, pr, -1,
			minio.PutObjectOptions{ContentType: "application/fhir+ndjson", PartSize: s.partSize,
				// No aws-chunked signing of the payload: TLS protects it on the wire
				// (and stand-ins such as gofakes3 do not decode it).
				DisableContentSha256: true})
		pr.CloseWithError(err)
		up.done <- err
	}()
	return up, nil
}

func (u *s3Upload) Write(p []byte) (int, error) { return u.pw.Write(p) }

// abort ends the upload without making an object.
func (u *s3Upload) abort() {
	u.pw.CloseWithError(errors.New("bulk: upload aborted"))
	<-u.done
}

func (u *s3Upload) Close() error {
	u.pw.Close()
	return <-u.done
}

func (s *s3Files) open(ctx context.Context, name string) (content, error) {
	o, err := s.c.GetObject(ctx, s.bucket, s.prefix+name, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	st, err := o.Stat()
	if err != nil {
		o.Close()
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil, os.ErrNotExist
		}
		return nil, err
	}
	return &s3Content{Object: o, st: st}, nil
}

type s3Content struct {
	*minio.Object
	st minio.ObjectInfo
}

func (c *s3Content) modTime() time.Time { return c.st.LastModified }
func (c *s3Content) size() int64        { return c.st.Size }

func (s *s3Files) removeAll(ctx context.Context, prefix string) error {
	objs := s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix + "/", Recursive: true})
	var errs []error
	for e := range s.c.RemoveObjects(ctx, s.bucket, objs, minio.RemoveObjectsOptions{}) {
		errs = append(errs, e.Err)
	}
	return errors.Join(errs...)
}

func (s *s3Files) list(ctx context.Context, prefix string) ([]string, error) {
	p := s.prefix
	if prefix != "" {
		p += prefix + "/"
	}
	var out []string
	for o := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: p}) {
		if o.Err != nil {
			return out, o.Err
		}
		if name, ok := strings.CutSuffix(strings.TrimPrefix(o.Key, p), "/"); ok {
			out = append(out, path.Base(name))
		}
	}
	return out, nil
}
