package bulk

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/fhir/fhirtime"
	"github.com/lapis-health/lapis/internal/fhir/outcome"
	"github.com/lapis-health/lapis/internal/principal"
	"github.com/lapis-health/lapis/internal/store"
	"golang.org/x/time/rate"
)

// pageSize is the _count of an export's searches: the resources held in
// memory at a time.
const pageSize = 1000

// result is the stored outcome of a finished job: its files.
type result struct {
	Attempt int64    `json:"attempt"`
	Output  []output `json:"output"`
	Error   []output `json:"error"`
	// Message is why a job failed as a whole, and Status the HTTP status
	// its status URL then answers (0: 500).
	Message string `json:"message,omitempty"`
	Status  int    `json:"status,omitempty"`
}

// errRevoked is the cause of an attempt stopped because the credential
// that started the job was revoked.
var errRevoked = errors.New("the credential that started this export was revoked")

// revoked reports whether the credential p that started a job has been
// revoked since. An error of the check is logged and taken as not
// revoked: the next check decides.
func (s *Service) revoked(ctx context.Context, p *principal.Principal, log *slog.Logger) bool {
	if s.cfg.Active == nil || p.Method == "" {
		return false
	}
	ok, err := s.cfg.Active(ctx, p)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("export: re-checking the credential failed", "err", err.Error())
		}
		return false
	}
	return !ok
}

// output is one file of a job.
type output struct {
	Type  string `json:"type"`
	File  string `json:"file"`
	Count int64  `json:"count"`
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// work is one worker: it claims jobs (queued, or whose lease expired) and
// runs them until ctx ends.
func (s *Service) work(ctx context.Context) {
	for ctx.Err() == nil {
		jb, err := s.jobs.claim(ctx, s.worker, s.now(), s.cfg.Lease)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("export: claiming a job failed", "err", err.Error())
		}
		if jb != nil {
			s.run(ctx, jb)
			continue
		}
		select {
		case <-ctx.Done():
		case <-s.wake:
		case <-time.After(s.cfg.Poll):
		}
	}
}

// notify wakes an idle worker of this instance (a job was queued).
func (s *Service) notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run runs one attempt of a job: it writes the files into the attempt's
// own folder (removing earlier attempts' folders: a job taken over is
// rewritten whole), renewing the lease meanwhile, and records the result.
// A job cancelled or taken over meanwhile stops at the next renewal.
func (s *Service) run(parent context.Context, jb *job) {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	log := s.log.With("job", jb.ID, "attempt", jb.Attempt)
	var p principal.Principal
	var pl plan
	if err := errors.Join(json.Unmarshal(jb.Principal, &p), json.Unmarshal(jb.Request, &pl)); err != nil {
		log.Error("export: unreadable job", "err", err.Error())
		s.finish(ctx, jb, stateFailed, &result{Attempt: jb.Attempt, Message: "the job could not be read"})
		return
	}
	if p.ClientID != "" || p.Method != "" {
		ctx = principal.NewContext(ctx, &p)
	}
	var progress sync.Mutex
	status := "started"
	setStatus := func(v string) { progress.Lock(); status = v; progress.Unlock() }
	if s.revoked(ctx, &p, log) {
		cancel(errRevoked)
	}
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		t := time.NewTicker(s.cfg.Lease / 3)
		defer t.Stop()
		check := time.NewTicker(s.cfg.CheckEvery)
		defer check.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-check.C:
				if s.revoked(ctx, &p, log) {
					cancel(errRevoked)
					return
				}
				continue
			case <-t.C:
			}
			progress.Lock()
			v := status
			progress.Unlock()
			err := s.jobs.heartbeat(ctx, jb.ID, jb.Attempt, s.now().Add(s.cfg.Lease), v)
			if errors.Is(err, errLost) {
				cancel(errLost)
				return
			}
			if err != nil && ctx.Err() == nil {
				log.Warn("export: renewing the lease failed", "err", err.Error())
			}
		}
	}()
	res, err := s.export(ctx, jb, &pl, setStatus)
	cancel(nil)
	<-hbDone
	if errors.Is(context.Cause(ctx), errLost) || parent.Err() != nil {
		s.afterLoss(jb)
		return
	}
	if errors.Is(context.Cause(ctx), errRevoked) {
		// The job fails as a whole (Bulk Data: an error status with an
		// OperationOutcome, here 403) and nothing it wrote is kept.
		log.Warn("export: job stopped, its credential was revoked")
		if s.finish(parent, jb, stateFailed, &result{Attempt: jb.Attempt, Message: errRevoked.Error(), Status: http.StatusForbidden}) {
			s.out.removeAll(context.WithoutCancel(parent), jobDir(jb.ID, 0))
		}
		return
	}
	state := stateDone
	if err != nil {
		state = stateFailed
		res = &result{Attempt: jb.Attempt, Message: "the export failed"}
	}
	// A job cancelled meanwhile (its folder removed under the writer) is
	// no failure.
	if s.finish(parent, jb, state, res) && err != nil {
		log.Error("export: job failed", "err", err.Error())
	}
}

// afterLoss cleans up after an attempt that stopped without finishing:
// when the job was cancelled (its row is gone) its folder is removed.
func (s *Service) afterLoss(jb *job) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if cur, err := s.jobs.get(ctx, jb.ID); err == nil && cur == nil {
		s.out.removeAll(ctx, jobDir(jb.ID, 0))
	}
}

// finish records the end of an attempt and audits the completion; false
// when the attempt had lost the job.
func (s *Service) finish(ctx context.Context, jb *job, state string, res *result) bool {
	b, _ := json.Marshal(res)
	err := s.jobs.finish(context.WithoutCancel(ctx), jb.ID, jb.Attempt, state, b, s.now().Add(s.cfg.Expire))
	if errors.Is(err, errLost) {
		s.afterLoss(jb)
		return false
	}
	if err != nil {
		s.log.Error("export: recording the end of a job failed", "job", jb.ID, "err", err.Error())
		return false
	}
	var p principal.Principal
	_ = json.Unmarshal(jb.Principal, &p)
	returned := 0
	for _, o := range res.Output {
		returned += int(o.Count)
	}
	what := "bulk export " + state
	if res.Message != "" {
		what += ": " + res.Message
	}
	s.record(ctx, &p, what, "job="+jb.ID, state == stateFailed, returned)
	return true
}

// record adds an export event to the audit trail (besides the FHIR
// interaction the audit stage records for each request): what happened
// to which job, for whom.
func (s *Service) record(ctx context.Context, p *principal.Principal, what, query string, failed bool, returned int) {
	e := audit.Event{Kind: audit.KindREST, Action: "E", Interaction: "operation", Description: what, Outcome: audit.OutcomeSuccess,
		Entities: []audit.Entity{{Role: "query", Query: query}}, Returned: returned}
	if p != nil {
		e.ClientID, e.Subject, e.FHIRUser, e.Method, e.CredentialID, e.Patient = p.ClientID, p.Subject, p.FHIRUser, p.Method, p.TokenID, p.Patient
	}
	if failed {
		e.Outcome = audit.OutcomeSerious
	}
	s.sink.Record(ctx, e)
}

// export writes every run of pl into the attempt's folder.
func (s *Service) export(ctx context.Context, jb *job, pl *plan, setStatus func(string)) (*result, error) {
	top := jobDir(jb.ID, 0)
	dir := jobDir(jb.ID, jb.Attempt)
	if names, err := s.out.list(ctx, top); err == nil {
		for _, n := range names {
			if top+"/"+n != dir {
				s.out.removeAll(ctx, top+"/"+n)
			}
		}
	}
	if err := errors.Join(s.out.removeAll(ctx, dir), s.out.mkdir(dir)); err != nil {
		return nil, err
	}
	res := &result{Attempt: jb.Attempt, Output: []output{}, Error: []output{}}
	var writers []*writer
	newWriter := func(typ, prefix string, outs *[]output) *writer {
		w := &writer{ctx: ctx, fs: s.out, dir: dir, typ: typ, prefix: prefix, max: s.cfg.MaxFileBytes, outs: outs}
		writers = append(writers, w)
		return w
	}
	// A job that stops midway leaves no file open (nor upload running).
	defer func() {
		for _, w := range writers {
			w.abort()
		}
	}()
	errs := newWriter("OperationOutcome", "error-", &res.Error)
	var total int64
	var lim *rate.Limiter
	if s.cfg.Rate > 0 {
		lim = rate.NewLimiter(rate.Limit(s.cfg.Rate), 1)
	}
	// What this attempt writes where searches overlap is recorded in the
	// database (seen.go), never in memory; a takeover starts afresh.
	sn := &seen{j: s.jobs, job: jb.ID, attempt: jb.Attempt}
	defer s.jobs.dropSeen(context.WithoutCancel(ctx), jb.ID, jb.Attempt)
	if err := s.jobs.clearSeen(ctx, jb.ID, jb.Attempt); err != nil {
		return nil, err
	}
	var prov *latestProvenance
	if pl.Provenance {
		prov = &latestProvenance{s: s, upTo: jb.TransactionTime, seen: sn,
			w: newWriter("Provenance", "", &res.Output)}
	}
	// The plan's patients, when a resource may be in the compartments of
	// several (bounded by maxPatients, not by the export's size).
	var planPatients map[string]struct{}
	if len(pl.Patients) > 1 {
		planPatients = make(map[string]struct{}, len(pl.Patients))
		for _, id := range pl.Patients {
			planPatients[id] = struct{}{}
		}
	}
	for i := 0; i < len(pl.Runs); {
		typ := pl.Runs[i].Type
		j := i
		for j < len(pl.Runs) && pl.Runs[j].Type == typ {
			j++
		}
		runs := pl.Runs[i:j]
		i = j
		w := newWriter(typ, "", &res.Output)
		write := func(id string, body []byte) error {
			if lim != nil {
				if err := lim.Wait(ctx); err != nil {
					return err
				}
			}
			if err := w.write(body); err != nil {
				return err
			}
			if prov != nil {
				if err := prov.add(ctx, typ+"/"+id); err != nil {
					return err
				}
			}
			total++
			if total%pageSize == 0 {
				setStatus(fmt.Sprintf("%s: %d resources written", typ, total))
			}
			return nil
		}
		// One search per run and patient; a resource found twice (two
		// _typeFilters, two patients) is written once: such resources
		// wait in a batch (d) that the seen table filters. With one run
		// per patient, only a resource that names another of the plan's
		// patients can be found twice (a compartment's members reference
		// its patient), so the others are written at once.
		d := &dedup{seen: sn, write: write}
		check := len(runs) > 1 || (runs[0].Compartment && len(pl.Patients) > 1)
		// namesOther reads the resource's JSON, which _elements has
		// subsetted (a Group's members are gone): such a run's resources
		// all go through the seen table.
		oneRun := len(runs) == 1 && !subsetted(runs[0].Query)
		var patient string // the compartment being searched
		emit := func(r *store.Resource) error {
			if !check || (oneRun && !namesOther(typ, r, patient, planPatients)) {
				return write(r.ID, r.Body)
			}
			return d.add(ctx, typ+"/"+r.ID, r.Body)
		}
		for _, rn := range runs {
			params, err := url.ParseQuery(rn.Query)
			if err != nil {
				return nil, err
			}
			params.Set("_count", strconv.Itoa(pageSize))
			if !rn.Compartment {
				err = s.svc.Each(ctx, typ, params, emit)
			} else {
				for _, pid := range pl.Patients {
					patient = pid
					if err = s.svc.EachOfPatient(ctx, pid, typ, params, emit); err != nil {
						break
					}
				}
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				var oe *outcome.Error
				if !errors.As(err, &oe) {
					return nil, err
				}
				// Partial success: the type's problem goes to the error file.
				if werr := errs.write((&outcome.Error{Status: oe.Status, Issues: oe.Issues}).JSON()); werr != nil {
					return nil, werr
				}
			}
		}
		if err := d.flush(ctx); err != nil {
			return nil, err
		}
		if err := w.close(); err != nil {
			return nil, err
		}
		setStatus(fmt.Sprintf("%s done: %d resources written", typ, total))
	}
	if prov != nil {
		if err := errors.Join(prov.flush(ctx), prov.w.close()); err != nil {
			return nil, err
		}
	}
	if err := errs.close(); err != nil {
		return nil, err
	}
	return res, nil
}

// provenanceBatch is how many exported resources one Provenance search
// looks up.
const provenanceBatch = 100

// latestProvenance writes, for each resource exported, the latest
// Provenance that targets it (greatest recorded, then lastUpdated),
// looking them up by batches of references under the job's credential.
// Each Provenance is written once (the seen table remembers it).
type latestProvenance struct {
	s       *Service
	upTo    time.Time
	w       *writer
	pending []string
	seen    *seen
}

// add queues the reference of an exported resource.
func (lp *latestProvenance) add(ctx context.Context, ref string) error {
	lp.pending = append(lp.pending, ref)
	if len(lp.pending) < provenanceBatch {
		return nil
	}
	return lp.flush(ctx)
}

// provenanceRecord is what the choice of the latest Provenance reads.
type provenanceRecord struct {
	Recorded string `json:"recorded"`
	Target   []struct {
		Reference string `json:"reference"`
	} `json:"target"`
}

// flush writes the latest Provenance of each queued reference.
func (lp *latestProvenance) flush(ctx context.Context) error {
	if len(lp.pending) == 0 {
		return nil
	}
	type pick struct {
		r        *store.Resource
		recorded time.Time
	}
	latest := make(map[string]pick, len(lp.pending))
	for _, ref := range lp.pending {
		latest[ref] = pick{}
	}
	lp.pending = lp.pending[:0]
	refs := make([]string, 0, len(latest))
	for ref := range latest {
		refs = append(refs, ref)
	}
	slices.Sort(refs) // the same files when a job is rewritten
	params := url.Values{"target": {strings.Join(refs, ",")}, "_count": {strconv.Itoa(pageSize)},
		"_lastUpdated": {"le" + fhirtime.FormatInstant(lp.upTo)}}
	err := lp.s.svc.Each(ctx, "Provenance", params, func(r *store.Resource) error {
		var pr provenanceRecord
		if err := json.Unmarshal(r.Body, &pr); err != nil {
			return err
		}
		rec, _ := time.Parse(time.RFC3339Nano, pr.Recorded)
		for _, t := range pr.Target {
			ref := strings.TrimPrefix(t.Reference, lp.s.base+"/")
			if i := strings.Index(ref, "/_history/"); i >= 0 {
				ref = ref[:i]
			}
			cur, ok := latest[ref]
			if !ok {
				continue
			}
			if cur.r == nil || rec.After(cur.recorded) || (rec.Equal(cur.recorded) && r.LastUpdated.After(cur.r.LastUpdated)) {
				latest[ref] = pick{r: r, recorded: rec}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	var picks []*store.Resource
	var keys []string
	inBatch := map[string]bool{}
	for _, ref := range refs {
		p := latest[ref]
		if p.r == nil || inBatch[p.r.ID] {
			continue
		}
		inBatch[p.r.ID] = true
		picks = append(picks, p.r)
		keys = append(keys, "Provenance/"+p.r.ID)
	}
	if len(keys) == 0 {
		return nil
	}
	fresh, err := lp.seen.add(ctx, keys)
	if err != nil {
		return err
	}
	for i, r := range picks {
		if !fresh[keys[i]] {
			continue
		}
		if err := lp.w.write(r.Body); err != nil {
			return err
		}
	}
	return nil
}

// dedup holds resources that an earlier search of the job may have
// written already, until a batch of them is checked against the seen
// table; the new ones are then written, in the order found.
type dedup struct {
	seen  *seen
	write func(id string, body []byte) error
	keys  []string // "Type/id", distinct
	ids   []string
	// bodies are copies: a search's resources are valid only during the
	// callback.
	bodies [][]byte
	bytes  int
	// inBatch holds the keys of the batch.
	inBatch map[string]bool
}

// dedupBytes bounds the bodies a dedup batch holds.
const dedupBytes = 8 << 20

// add queues a resource (its key "Type/id") and checks the batch when full.
func (d *dedup) add(ctx context.Context, key string, body []byte) error {
	if d.inBatch == nil {
		d.inBatch = map[string]bool{}
	}
	if d.inBatch[key] {
		return nil
	}
	d.inBatch[key] = true
	_, id, _ := strings.Cut(key, "/")
	d.keys, d.ids, d.bodies = append(d.keys, key), append(d.ids, id), append(d.bodies, bytes.Clone(body))
	d.bytes += len(body)
	if len(d.keys) < pageSize && d.bytes < dedupBytes {
		return nil
	}
	return d.flush(ctx)
}

// flush writes the batch's resources not written before.
func (d *dedup) flush(ctx context.Context) error {
	if len(d.keys) == 0 {
		return nil
	}
	fresh, err := d.seen.add(ctx, d.keys)
	if err != nil {
		return err
	}
	for i, k := range d.keys {
		if fresh[k] {
			if err := d.write(d.ids[i], d.bodies[i]); err != nil {
				return err
			}
		}
	}
	clear(d.inBatch)
	d.keys, d.ids, d.bodies, d.bytes = d.keys[:0], d.ids[:0], d.bodies[:0], 0
	return nil
}

// subsetted reports whether a run's query asks for _elements, so that the
// resources it finds are not their whole stored JSON.
func subsetted(query string) bool {
	q, err := url.ParseQuery(query)
	return err != nil || q.Has("_elements")
}

// namesOther reports whether resource r of typ, found in the compartment
// of patient, names another of the plan's patients (a reference
// "Patient/ID" anywhere in its JSON, or its own id for a Patient): only
// such a resource can be in another of their compartments too.
func namesOther(typ string, r *store.Resource, patient string, plan map[string]struct{}) bool {
	other := func(id string) bool {
		if id == patient {
			return false
		}
		_, ok := plan[id]
		return ok
	}
	if typ == "Patient" && other(r.ID) {
		return true
	}
	const prefix = "Patient/"
	b := r.Body
	for {
		i := bytes.Index(b, []byte(prefix))
		if i < 0 {
			return false
		}
		b = b[i+len(prefix):]
		n := 0
		for n < len(b) && isIDByte(b[n]) {
			n++
		}
		if n > 0 && other(string(b[:n])) {
			return true
		}
		b = b[n:]
	}
}

// isIDByte reports whether c may appear in a FHIR id.
func isIDByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.'
}

// writer writes the NDJSON files of one type, starting a new file before
// a line would take the current one past max bytes (a file holds at least
// one line).
type writer struct {
	ctx              context.Context
	fs               files
	dir, typ, prefix string
	max              int64
	outs             *[]output
	n                int
	f                io.WriteCloser
	bw               *bufio.Writer
	size, count      int64
	buf              bytes.Buffer
}

func (w *writer) write(line []byte) error {
	if bytes.IndexByte(line, '\n') >= 0 {
		w.buf.Reset()
		if err := json.Compact(&w.buf, line); err != nil {
			return err
		}
		line = w.buf.Bytes()
	}
	if w.f != nil && w.size+int64(len(line))+1 > w.max {
		if err := w.close(); err != nil {
			return err
		}
	}
	if w.f == nil {
		w.n++
		f, err := w.fs.create(w.ctx, w.dir+"/"+w.name())
		if err != nil {
			return err
		}
		w.f, w.bw, w.size, w.count = f, bufio.NewWriterSize(f, 64<<10), 0, 0
	}
	w.bw.Write(line)
	w.bw.WriteByte('\n')
	w.size += int64(len(line)) + 1
	w.count++
	return nil
}

func (w *writer) name() string { return w.prefix + w.typ + "-" + strconv.Itoa(w.n) + ".ndjson" }

// abort drops the current file unfinished (a no-op after close).
func (w *writer) abort() {
	if w.f == nil {
		return
	}
	if a, ok := w.f.(interface{ abort() }); ok {
		a.abort()
	} else {
		w.f.Close()
	}
	w.f = nil
}

// close ends the current file (flushed and synced) and lists it.
func (w *writer) close() error {
	if w.f == nil {
		return nil
	}
	f := w.f
	w.f = nil
	err := errors.Join(w.bw.Flush(), f.Close())
	if err != nil {
		return err
	}
	*w.outs = append(*w.outs, output{Type: w.typ, File: w.name(), Count: w.count})
	return nil
}

// sweep removes expired jobs and their files, and folders of jobs that no
// longer exist, until ctx ends.
func (s *Service) sweep(ctx context.Context) {
	every := min(max(s.cfg.Expire/4, 100*time.Millisecond), time.Minute)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		ids, err := s.jobs.expired(ctx, s.now())
		if err != nil {
			continue
		}
		for _, id := range ids {
			if ok, err := s.jobs.remove(ctx, id); err == nil && ok {
				s.out.removeAll(ctx, jobDir(id, 0))
			}
		}
		// Folders left by a cancellation that raced a worker's writes.
		names, _ := s.out.list(ctx, "")
		for _, n := range names {
			if jb, err := s.jobs.get(ctx, n); err == nil && jb == nil {
				s.out.removeAll(ctx, jobDir(n, 0))
			}
		}
	}
}
