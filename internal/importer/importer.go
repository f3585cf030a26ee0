// Package importer loads FHIR data files into Lapis through the resource
// service, so imported data is validated and indexed exactly like data
// written over the API. It reads transaction and batch Bundles (processed as
// such), collection and other Bundles and single resources (stored with
// their ids), and NDJSON files (one resource per line, as Bulk Data exports
// write them). A failing entry is reported and the import carries on.
package importer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/resource"
)

// BundleProcessor processes batch and transaction Bundles;
// *resource.Service implements it.
type BundleProcessor interface {
	Bundle(ctx context.Context, body []byte, ret resource.Return) (*resource.Result, error)
}

// Options tune an import.
type Options struct {
	// Progress, when set, receives a progress line that is rewritten in
	// place (use it only for terminals).
	Progress io.Writer
	// Errors receives one line per failed entry or file.
	Errors io.Writer
	// ChunkSize is the number of resources per transaction for NDJSON and
	// collection Bundles (default 500).
	ChunkSize int
	// Workers is the number of files processed at once (default 2).
	Workers int
	// MaxFileBytes bounds a JSON (non-NDJSON) file (default 1 GiB).
	MaxFileBytes int64
}

// Report sums up an import.
type Report struct {
	Files     int     `json:"files"`
	Resources int     `json:"resources"` // entries imported successfully
	Failed    int     `json:"failed"`    // entries that failed
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"resources_per_second"`
}

// Importer imports files.
type Importer struct {
	svc  BundleProcessor
	opts Options

	mu     sync.Mutex
	report Report
	start  time.Time
	lastPr time.Time
}

// New returns an Importer that writes through svc.
func New(svc BundleProcessor, opts Options) *Importer {
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = 500
	}
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.MaxFileBytes <= 0 {
		opts.MaxFileBytes = 1 << 30
	}
	if opts.Errors == nil {
		opts.Errors = io.Discard
	}
	return &Importer{svc: svc, opts: opts}
}

// Import imports the files and returns the report. It returns an error only
// when ctx is cancelled; failures of files and entries are counted in the
// report and written to Options.Errors.
func (im *Importer) Import(ctx context.Context, files []string) (Report, error) {
	im.start = time.Now()
	jobs := make(chan string)
	var wg sync.WaitGroup
	for i := 0; i < im.opts.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range jobs {
				im.importFile(ctx, f)
			}
		}()
	}
feed:
	for _, f := range files {
		select {
		case jobs <- f:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	im.mu.Lock()
	defer im.mu.Unlock()
	im.report.Seconds = time.Since(im.start).Seconds()
	if im.report.Seconds > 0 {
		im.report.PerSecond = float64(im.report.Resources) / im.report.Seconds
	}
	if im.opts.Progress != nil {
		im.progressLocked(true)
	}
	return im.report, ctx.Err()
}

func (im *Importer) importFile(ctx context.Context, path string) {
	err := im.file(ctx, path)
	im.mu.Lock()
	defer im.mu.Unlock()
	im.report.Files++
	if err != nil && !errors.Is(err, context.Canceled) {
		im.report.Failed++
		fmt.Fprintf(im.opts.Errors, "%s: %s\n", filepath.Base(path), oneLine(err))
	}
	im.progressLocked(false)
}

func (im *Importer) file(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cannot open: %w", errors.Unwrap(err))
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	if isNDJSON(path, br) {
		return im.ndjson(ctx, path, br)
	}
	body, err := io.ReadAll(io.LimitReader(br, im.opts.MaxFileBytes+1))
	if err != nil {
		return err
	}
	if int64(len(body)) > im.opts.MaxFileBytes {
		return fmt.Errorf("file larger than %d bytes", im.opts.MaxFileBytes)
	}
	var head struct {
		ResourceType string            `json:"resourceType"`
		Type         string            `json:"type"`
		Entry        []json.RawMessage `json:"entry"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return fmt.Errorf("not valid JSON: %v", err)
	}
	if head.ResourceType == "Bundle" && (head.Type == "transaction" || head.Type == "batch") {
		return im.bundle(ctx, path, body, len(head.Entry), head.Type == "batch")
	}
	if head.ResourceType == "" {
		return fmt.Errorf("not a FHIR resource (no resourceType)")
	}
	// Collection (or other) Bundles: store the contained resources with
	// their ids. Any other resource: store it.
	var resources []json.RawMessage
	if head.ResourceType == "Bundle" {
		for _, e := range head.Entry {
			var en struct {
				Resource json.RawMessage `json:"resource"`
			}
			if json.Unmarshal(e, &en) == nil && len(en.Resource) > 0 {
				resources = append(resources, en.Resource)
			}
		}
	} else {
		resources = []json.RawMessage{body}
	}
	for i := 0; i < len(resources); i += im.opts.ChunkSize {
		if err := ctx.Err(); err != nil {
			return err
		}
		end := min(i+im.opts.ChunkSize, len(resources))
		im.chunk(ctx, path, resources[i:end], i+1)
	}
	return nil
}

// bundle runs a transaction or batch Bundle file as it is.
func (im *Importer) bundle(ctx context.Context, path string, body []byte, entries int, batch bool) error {
	res, err := im.svc.Bundle(ctx, body, resource.ReturnMinimal)
	if err != nil {
		var oe *outcome.Error
		if errors.As(err, &oe) {
			im.fail(entries, fmt.Sprintf("%s: transaction rejected, nothing from this file was imported: %s", filepath.Base(path), oneLine(oe)))
			return nil
		}
		return err
	}
	if !batch {
		im.ok(entries)
		return nil
	}
	im.countBatch(path, res.Body, 1)
	return nil
}

// chunk stores resources (with their ids when they have one) in one
// transaction; if it fails it retries them as a batch to report and skip
// the failing entries only.
func (im *Importer) chunk(ctx context.Context, path string, resources []json.RawMessage, first int) {
	tx := buildBundle("transaction", resources)
	_, err := im.svc.Bundle(ctx, tx, resource.ReturnMinimal)
	if err == nil {
		im.ok(len(resources))
		return
	}
	var oe *outcome.Error
	if !errors.As(err, &oe) {
		im.fail(len(resources), fmt.Sprintf("%s: %s", filepath.Base(path), oneLine(err)))
		return
	}
	res, err := im.svc.Bundle(ctx, buildBundle("batch", resources), resource.ReturnMinimal)
	if err != nil {
		im.fail(len(resources), fmt.Sprintf("%s: %s", filepath.Base(path), oneLine(err)))
		return
	}
	im.countBatch(path, res.Body, first)
}

// countBatch counts the entries of a batch-response Bundle and reports the
// failed ones.
func (im *Importer) countBatch(path string, body []byte, first int) {
	var resp struct {
		Entry []struct {
			Response struct {
				Status  string          `json:"status"`
				Outcome json.RawMessage `json:"outcome"`
			} `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		im.fail(0, fmt.Sprintf("%s: unreadable batch response", filepath.Base(path)))
		return
	}
	okN := 0
	for i, e := range resp.Entry {
		if strings.HasPrefix(e.Response.Status, "2") {
			okN++
			continue
		}
		im.fail(1, fmt.Sprintf("%s: entry %d: %s %s", filepath.Base(path), first+i, e.Response.Status, outcomeText(e.Response.Outcome)))
	}
	im.ok(okN)
}

// outcomeText is an entry's OperationOutcome as the message of an
// outcome.Error ("" when there is none).
func outcomeText(raw json.RawMessage) string {
	var oo struct {
		Issue []outcome.Issue `json:"issue"`
	}
	if json.Unmarshal(raw, &oo) != nil || len(oo.Issue) == 0 {
		return ""
	}
	return (&outcome.Error{Issues: oo.Issue}).Error()
}

// ndjson streams one resource per line in chunks.
func (im *Importer) ndjson(ctx context.Context, path string, br *bufio.Reader) error {
	var chunk []json.RawMessage
	first, line := 1, 0
	flush := func() {
		if len(chunk) > 0 {
			im.chunk(ctx, path, chunk, first)
			chunk = nil
		}
		first = line + 1
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(b)) > 0 {
			line++
			b = bytes.TrimSpace(b)
			if !json.Valid(b) {
				im.fail(1, fmt.Sprintf("%s: line %d: not valid JSON", filepath.Base(path), line))
			} else {
				chunk = append(chunk, json.RawMessage(append([]byte(nil), b...)))
				if len(chunk) >= im.opts.ChunkSize {
					flush()
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	flush()
	return nil
}

// buildBundle wraps resources into a transaction or batch Bundle: PUT
// Type/id for resources with an id (so ids and references between them are
// kept), POST Type otherwise. A resource whose type cannot be read is sent
// as POST to an invalid type so that it fails with a clear message.
func buildBundle(typ string, resources []json.RawMessage) []byte {
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"Bundle","type":"`)
	b.WriteString(typ)
	b.WriteString(`","entry":[`)
	for i, r := range resources {
		var head struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		_ = json.Unmarshal(r, &head)
		if i > 0 {
			b.WriteByte(',')
		}
		req := map[string]string{"method": "POST", "url": head.ResourceType}
		if head.ID != "" && resource.ValidID(head.ID) {
			req = map[string]string{"method": "PUT", "url": head.ResourceType + "/" + head.ID}
		}
		rq, _ := json.Marshal(req)
		b.WriteString(`{"resource":`)
		b.Write(r)
		b.WriteString(`,"request":`)
		b.Write(rq)
		b.WriteByte('}')
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// isNDJSON reports whether a file holds one JSON value per line: by its
// extension, or by its first line being a complete JSON object.
func isNDJSON(path string, br *bufio.Reader) bool {
	ext := strings.ToLower(filepath.Ext(path))
	if ext == ".ndjson" || ext == ".jsonl" {
		return true
	}
	if ext == ".json" {
		return false
	}
	peek, _ := br.Peek(1 << 20)
	nl := bytes.IndexByte(peek, '\n')
	if nl < 0 {
		return false
	}
	firstLine := bytes.TrimSpace(peek[:nl])
	return len(firstLine) > 1 && firstLine[0] == '{' && json.Valid(firstLine)
}

func (im *Importer) ok(n int) {
	im.mu.Lock()
	im.report.Resources += n
	im.progressLocked(false)
	im.mu.Unlock()
}

func (im *Importer) fail(n int, msg string) {
	im.mu.Lock()
	im.report.Failed += n
	fmt.Fprintln(im.opts.Errors, msg)
	im.mu.Unlock()
}

func (im *Importer) progressLocked(final bool) {
	if im.opts.Progress == nil {
		return
	}
	now := time.Now()
	if !final && now.Sub(im.lastPr) < 200*time.Millisecond {
		return
	}
	im.lastPr = now
	el := now.Sub(im.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(im.report.Resources) / el
	}
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(im.opts.Progress, "\r%d files, %d resources imported, %d failed, %.0f resources/s %s", im.report.Files, im.report.Resources, im.report.Failed, rate, end)
}

func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", " ")
}
