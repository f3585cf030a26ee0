package bulk_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/lapis-health/lapis/internal/testutil/lapistest"
	"github.com/lapis-health/lapis/internal/testutil/poll"
)

// TestExportS3 keeps the files in an S3-compatible bucket (gofakes3, in
// this process): the export is complete and correct, downloads go
// through Lapis (Range answered 206), nothing is written to the export
// folder, and a cancellation removes the job's objects.
func TestExportS3(t *testing.T) {
	t.Parallel()
	dialects(t, testExportS3)
}

func testExportS3(t *testing.T, dbURL string) {
	backend := s3mem.New()
	if err := backend.CreateBucket("exports"); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(ts.Close)
	e := newEnvWith(t, lapistest.Options{Database: dbURL, Args: []string{"--export-s3-url", ts.URL + "/exports/lapis"},
		Env: []string{"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test-secret"}})
	mc, err := minio.New(strings.TrimPrefix(ts.URL, "http://"), &minio.Options{Creds: credentials.NewStaticV4("test", "test-secret", ""), BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	objects := func(job string) []string {
		var keys []string
		for o := range mc.ListObjects(context.Background(), "exports", minio.ListObjectsOptions{Prefix: "lapis/" + job + "/", Recursive: true}) {
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			keys = append(keys, o.Key)
		}
		return keys
	}

	st := e.start(t, e.sys, "/$export?_type=Patient,Observation")
	m, _ := e.wait(t, e.sys, st)
	check(t, "s3", e.contents(t, e.sys, m), want("Patient", []string{"p1", "p2", "p3"}, "Observation", []string{"o1", "o2", "o3", "o4"}))
	if keys := objects(jobID(st)); len(keys) != 2 || !strings.HasPrefix(keys[0], "lapis/"+jobID(st)+"/a1/") {
		t.Errorf("objects of the job: %v", keys)
	}
	if _, err := os.Stat(filepath.Join(e.DataDir, "export", jobID(st))); !os.IsNotExist(err) {
		t.Errorf("the export folder holds the job: %v", err)
	}
	full := e.Do(t, "GET", m.Output[0].URL, nil, "X-API-Key", e.sys)
	r := e.Do(t, "GET", m.Output[0].URL, nil, "X-API-Key", e.sys, "Range", "bytes=2-9")
	if r.Status != http.StatusPartialContent || string(r.Body) != string(full.Body[2:10]) {
		t.Errorf("Range: %d %q, want 206 %q", r.Status, r.Body, full.Body[2:10])
	}
	if r := e.Do(t, "GET", m.Output[0].URL, nil, "X-API-Key", e.other); r.Status != http.StatusForbidden {
		t.Errorf("another client's download: %d", r.Status)
	}
	if r := e.Do(t, "DELETE", st, nil, "X-API-Key", e.sys); r.Status != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	poll.Until(t, 10*time.Second, "the cancelled job's objects removed", func() bool { return len(objects(jobID(st))) == 0 })
}
