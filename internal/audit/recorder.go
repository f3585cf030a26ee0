package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/lapis-health/lapis/internal/database"
	"github.com/lapis-health/lapis/internal/metrics"
	"github.com/lapis-health/lapis/internal/store"
)

// ErrUnavailable is returned by Commit when the record could not be made
// durable (database failure, queue saturated or recorder closed).
var ErrUnavailable = errors.New("audit: record could not be written")

// Updater runs a store transaction; store.Store implements it.
type Updater interface {
	Update(ctx context.Context, fn func(tx store.Tx) error) error
}

// Indexer extracts the search index of a resource; *extract.Extractor
// implements it.
type Indexer interface {
	Extract(resource map[string]any) (store.Index, error)
}

// Observer sees every committed event, on the writer goroutine (off the
// request path); it must not block. The alert engine implements it.
type Observer interface {
	Observe(e *Event)
}

// Config configures a Recorder.
type Config struct {
	// DB is the chain table (required).
	DB *DB
	// Store receives the records as AuditEvent resources, so they are
	// readable and searchable through the FHIR API (required).
	Store Updater
	// Indexer extracts the AuditEvents' search index (required).
	Indexer Indexer
	// Site is the FHIR base URL (AuditEvent.source.site).
	Site string
	// Host names the machine in the chain registry (default os.Hostname).
	Host string
	// Stream, when set, receives every committed record as one JSON line
	// (for a SIEM), and the chain head periodically.
	Stream io.Writer
	// Observer, when set, sees every committed event (alerts).
	Observer Observer
	// Metrics receives the queue and write figures (may be nil).
	Metrics *metrics.Metrics
	// Logger receives failures and the periodic chain head (default
	// slog.Default()).
	Logger *slog.Logger
	// QueueSize bounds the records waiting to be written (default 16384).
	QueueSize int
	// MaxBatch bounds the records of one group commit (default 1024).
	MaxBatch int
	// EnqueueTimeout is how long Record blocks on a full queue before it
	// gives up and logs the record's loss as an error (default 5 s).
	EnqueueTimeout time.Duration
	// AnchorEvery is the period of the chain-head log line and stream
	// anchor (default 1 minute; negative disables).
	AnchorEvery time.Duration
	// Now returns the current time (default time.Now).
	Now func() time.Time
	// GroupDelay is how long a batch holding only asynchronous records
	// waits for more before it is written (default 100 ms; negative:
	// none). A write's record never waits: the batch goes as soon as one
	// joins. Every commit on SQLite makes each reader connection drop its
	// page cache and memory map at its next read (WAL mode), so under a
	// steady read load fewer, larger batches make the reads themselves
	// cheaper: 10 chain commits a second instead of 50.
	GroupDelay time.Duration
	// DrainTimeout bounds the copy's final catch-up on Close (default
	// 10 s); what is left is copied by the next start's recovery.
	DrainTimeout time.Duration
	// CopyBatch is the number of AuditEvents the copy writes per FHIR
	// store transaction (default 250). Larger batches write the index
	// pages the records share once per transaction instead of once per
	// few records: on SQLite, 100 instead of 25 writes 31 % fewer bytes
	// and 35 % fewer pages per record, for 19 % less CPU. They also commit
	// less often, and every commit costs each SQLite reader connection its
	// page cache (see GroupDelay) — the copy's inserts touch the very
	// resources B-trees a read by id walks. On SQLite the copy holds the
	// one write lock that FHIR writes and the chain also need, so the
	// batch stays bounded (a few tens of milliseconds).
	CopyBatch int
	// RecoverEvery is how often the recorder looks, beside the copy of
	// its own chain, for chains other processes left idle with records
	// not yet in the FHIR store (admin commands' audit.Direct chains,
	// crashed instances), besides at start (default 1 minute, at least a
	// second; negative: only at start).
	RecoverEvery time.Duration
	// CopyDuty is the share of time the copy into the FHIR store may be
	// busy while records keep coming (default 0.25): it sleeps after each
	// batch during which new records were committed, so that the index
	// writes of AuditEvents never compete with requests for more than a
	// fraction of a core. The backlog waits, durable, in the chain table;
	// once no new records come, the copy catches up without pauses.
	// 1 = no pause.
	CopyDuty float64
	// CopyLag is the lag of searchable AuditEvents behind the chain past
	// which the copy's duty rises (default 30 s; negative: it never does):
	// in proportion to the lag — CopyDuty at CopyLag, twice CopyDuty at
	// twice the lag, up to the whole core — so that a load the copy cannot
	// follow at CopyDuty but can with more settles at a lag of at most
	// CopyLag/CopyDuty (2 minutes with the defaults). A load the copy
	// cannot follow even busy all the time makes the lag grow until it
	// drops. The lag is exported as lapis_audit_copy_lag_seconds.
	CopyLag time.Duration
}

// Recorder is the audit Sink of a running server: a bounded queue and one
// writer goroutine that appends records to this instance's hash chain in
// group commits, then stores them as AuditEvent resources.
type Recorder struct {
	cfg   Config
	chain string
	q     chan *item

	gate Gate
	done chan struct{}

	// The materializer copies committed chain rows into the FHIR store at
	// its own pace (the chain table is the durable queue).
	kick  chan struct{}
	mstop chan struct{}
	mdone chan struct{}
	// rdone closes when the recovery of other processes' chains (beside
	// the copy) has stopped.
	rdone chan struct{}

	// copied is how far the copy has got: every record of this chain up
	// to it is stored as an AuditEvent resource. Each record carries it as
	// its watermark, under its hash.
	copied atomic.Int64
	// lastBatch is when the writer last committed a batch (UnixNano): the
	// copy pauses (at its duty) only while records keep coming.
	lastBatch atomic.Int64
	// copyLag is the age of the oldest record the copy has not stored
	// (nanoseconds; 0: caught up), as of its last batch.
	copyLag atomic.Int64
	// lagAt is when copyLag was measured (UnixNano, on cfg.Now's clock).
	lagAt atomic.Int64

	// docs hands the copy the AuditEvents this process wrote, by seq, so
	// that the copy indexes them without decoding the bytes again;
	// bounded by maxHandoff, beyond which (and for other chains' records)
	// the copy decodes the stored bytes.
	docsMu sync.Mutex
	docs   map[int64]*auditEvent
	// direct is whether the handed-over AuditEvents are indexed by
	// directIndex (the Indexer agrees with it) rather than by the Indexer.
	direct bool

	// writer state (writer goroutine only; Close reads it after the writer
	// ended)
	seq int64
	// resyncErr is set while the chain's head is unknown after a failed
	// batch (the writer goroutine's own; write retries the read first).
	resyncErr      error
	prev           string
	anchoredCopied int64
	// link hashes the records of a batch (HashV2) in a buffer reused
	// from record to record.
	link linkScratch
}

type item struct {
	e    Event
	at   time.Time
	wait chan error // nil for asynchronous records
}

// Start registers a new chain for this process and starts the writer and
// the copy (which first copies, in the background, the records a stopped
// or crashed process left in the chain table only).
func Start(ctx context.Context, cfg Config) (*Recorder, error) {
	if cfg.DB == nil || cfg.Store == nil || cfg.Indexer == nil {
		return nil, errors.New("audit: DB, Store and Indexer are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 16384
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 1024
	}
	if cfg.EnqueueTimeout <= 0 {
		cfg.EnqueueTimeout = 5 * time.Second
	}
	if cfg.AnchorEvery == 0 {
		cfg.AnchorEvery = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CopyBatch <= 0 {
		cfg.CopyBatch = 250
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if cfg.GroupDelay == 0 {
		cfg.GroupDelay = 100 * time.Millisecond
	}
	if cfg.CopyDuty <= 0 || cfg.CopyDuty > 1 {
		cfg.CopyDuty = 0.25
	}
	if cfg.CopyLag == 0 {
		cfg.CopyLag = 30 * time.Second
	}
	if cfg.RecoverEvery == 0 {
		cfg.RecoverEvery = time.Minute
	}
	if cfg.Host == "" {
		cfg.Host, _ = os.Hostname()
	}
	r := &Recorder{cfg: cfg, chain: uuid.NewString(), q: make(chan *item, cfg.QueueSize), done: make(chan struct{}), prev: Genesis,
		kick: make(chan struct{}, 1), mstop: make(chan struct{}), mdone: make(chan struct{}), rdone: make(chan struct{}), docs: map[int64]*auditEvent{},
		direct: directIndexAgrees(cfg.Indexer, cfg.Site)}
	if !r.direct {
		cfg.Logger.Info("audit: AuditEvents indexed by the generic extractor (the search parameters differ from R4's)")
	}
	if err := cfg.DB.StartChain(ctx, r.chain, cfg.Host, cfg.Now()); err != nil {
		return nil, fmt.Errorf("audit: start chain: %w", err)
	}
	go r.run()
	go r.materializeLoop()
	go r.recoverLoop()
	return r, nil
}

// Chain returns this process's chain id.
func (r *Recorder) Chain() string { return r.chain }

// Record queues e and returns at once; when the queue is full it blocks up
// to the EnqueueTimeout. Reads and security events use it.
func (r *Recorder) Record(ctx context.Context, e Event) {
	_ = r.enqueue(&item{e: e})
}

// Commit queues e and waits until its batch is durable in the chain table.
// Writes use it: a write is acknowledged only after its record is.
func (r *Recorder) Commit(ctx context.Context, e Event) error {
	it := &item{e: e, wait: make(chan error, 1)}
	if err := r.enqueue(it); err != nil {
		return err
	}
	// The writer always answers (also when the batch fails or on Close);
	// the request context is not consulted: the write already happened and
	// its record must be settled before the response is released.
	return <-it.wait
}

func (r *Recorder) enqueue(it *item) error {
	if it.e.Time.IsZero() {
		it.e.Time = r.cfg.Now()
	}
	it.at = r.cfg.Now()
	if !r.gate.Enter() {
		r.lost(&it.e, "recorder closed")
		return ErrUnavailable
	}
	defer r.gate.Leave()
	select {
	case r.q <- it:
	default:
		t := time.NewTimer(r.cfg.EnqueueTimeout)
		defer t.Stop()
		select {
		case r.q <- it:
		case <-t.C:
			r.lost(&it.e, "queue full")
			return ErrUnavailable
		}
	}
	r.cfg.Metrics.AuditQueued(1)
	r.cfg.Metrics.AuditQueueDepth(len(r.q))
	return nil
}

// lost logs a record that could not be queued (never silently dropped).
func (r *Recorder) lost(e *Event, why string) {
	r.cfg.Metrics.Refused("audit_lost")
	r.cfg.Logger.Error("audit record lost", "reason", why, "kind", string(e.Kind), "action", e.Action,
		"interaction", e.Interaction, "client_id", e.ClientID, "status", e.Status, "time", e.Time)
}

// Close drains the queue, writes the final chain head and stops the
// writer.
func (r *Recorder) Close() error {
	if !r.gate.Shut() {
		return nil
	}
	close(r.q)
	<-r.done
	close(r.mstop)
	<-r.mdone
	<-r.rdone
	// The copy caught up after the writer's last anchor: publish how far,
	// so that verify --anchors knows which AuditEvents must exist.
	if r.seq > 0 && r.copied.Load() > r.anchoredCopied {
		r.anchor()
	}
	return nil
}

// idleAfter is how long without new records makes the copy catch up
// without pauses.
const idleAfter = time.Second

// materializeLoop copies this chain's committed rows into the FHIR store
// in batches, following a cursor, woken after every chain commit.
func (r *Recorder) materializeLoop() {
	defer close(r.mdone)
	var cursor int64
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var deadline time.Time
	// The copy is background work: it never holds a connection a request
	// waits for.
	bg := database.Background(context.Background())
	for {
		stopping := false
		select {
		case <-r.kick:
		case <-t.C:
		case <-r.mstop:
			stopping = true
			deadline = r.cfg.Now().Add(r.cfg.DrainTimeout)
		}
		for {
			rows, err := r.cfg.DB.Page(bg, r.chain, cursor, r.cfg.CopyBatch)
			if err != nil {
				r.cfg.Logger.Error("audit records not yet searchable", "err", err)
				r.ageCopyLag()
				break
			}
			pending := rows[:0]
			for _, row := range rows {
				if !row.Materialized {
					pending = append(pending, row)
				}
			}
			lag := time.Duration(0)
			if len(pending) > 0 {
				lag = max(0, r.cfg.Now().Sub(pending[0].Recorded))
			}
			r.setCopyLag(lag)
			began := time.Now()
			if err := materialize(bg, r.cfg.DB, r.cfg.Store, r.cfg.Indexer, pending, r.doc, r.direct); err != nil {
				// Durable in the chain table; retried on the next tick
				// or by the next start's recovery.
				r.cfg.Logger.Error("audit records not yet searchable", "records", len(pending), "err", err)
				break
			}
			r.forget(rows)
			if len(rows) > 0 {
				cursor = rows[len(rows)-1].Seq
				// Every record up to cursor is stored: in this batch or
				// (seq <= copied_seq) before it.
				if cursor > r.copied.Load() {
					r.copied.Store(cursor)
				}
			}
			if stopping && r.cfg.Now().After(deadline) {
				break
			}
			// Records committed within the last second: requests are
			// coming, keep to the duty. None: the server is idle, go on.
			busy := time.Since(time.Unix(0, r.lastBatch.Load())) < idleAfter
			if duty := copyDuty(r.cfg.CopyDuty, lag, r.cfg.CopyLag); !stopping && busy && len(pending) > 0 && duty < 1 {
				pause := time.Duration(float64(time.Since(began)) * (1/duty - 1))
				select {
				case <-time.After(pause):
				case <-r.mstop:
					// Stopping: read again, the writer may have committed more.
					stopping = true
					deadline = r.cfg.Now().Add(r.cfg.DrainTimeout)
					continue
				}
			}
			if len(rows) < r.cfg.CopyBatch {
				// Caught up with what the writer had committed.
				r.setCopyLag(0)
				break
			}
		}
		if stopping {
			return
		}
	}
}

// copyDuty is the share of time the copy may be busy while records keep
// coming, lag behind the chain: duty up to a lag of target, then rising
// in proportion to the lag, up to 1.
func copyDuty(duty float64, lag, target time.Duration) float64 {
	if target <= 0 || lag <= target {
		return duty
	}
	return min(1, duty*float64(lag)/float64(target))
}

// setCopyLag records the copy's lag behind the chain, measured now.
func (r *Recorder) setCopyLag(lag time.Duration) {
	r.lagAt.Store(r.cfg.Now().UnixNano())
	r.copyLag.Store(int64(lag))
	r.cfg.Metrics.AuditCopyLag(lag)
}

// ageCopyLag keeps the lag true while the chain cannot be read: a
// record that was not yet copied when the lag was last measured is still
// not copied, so the lag has grown by the time since. (A copy that had
// caught up stays at 0: the writer, on the same database, cannot have
// committed records the copy cannot read.)
func (r *Recorder) ageCopyLag() {
	if lag := r.CopyLag(); lag > 0 {
		r.setCopyLag(lag + r.cfg.Now().Sub(time.Unix(0, r.lagAt.Load())))
	}
}

// CopyLag is how far searchable AuditEvents were behind this process's
// chain at the copy's last batch: the age of the oldest record not yet
// stored as an AuditEvent, 0 when the copy had caught up.
func (r *Recorder) CopyLag() time.Duration { return time.Duration(r.copyLag.Load()) }

func (r *Recorder) run() {
	defer close(r.done)
	var tick <-chan time.Time
	if r.cfg.AnchorEvery > 0 {
		t := time.NewTicker(r.cfg.AnchorEvery)
		defer t.Stop()
		tick = t.C
	}
	anchored := int64(0)
	batch := make([]*item, 0, r.cfg.MaxBatch)
	for {
		var first *item
		var ok bool
		select {
		case first, ok = <-r.q:
		case <-tick:
			if r.seq != anchored {
				r.anchor()
				anchored = r.seq
			}
			continue
		}
		if !ok {
			if r.seq != anchored {
				r.anchor()
			}
			return
		}
		batch = append(batch[:0], first)
		waiter := first.wait != nil
	fill:
		for len(batch) < r.cfg.MaxBatch {
			select {
			case it, ok := <-r.q:
				if !ok {
					break fill
				}
				batch = append(batch, it)
				waiter = waiter || it.wait != nil
			default:
				break fill
			}
		}
		// A batch of asynchronous records only (reads, security events)
		// waits up to GroupDelay for company: far fewer transactions under
		// a steady stream of reads. A write's record is never delayed.
		if !waiter && len(batch) < r.cfg.MaxBatch && r.cfg.GroupDelay > 0 {
			timer := time.NewTimer(r.cfg.GroupDelay)
		linger:
			for len(batch) < r.cfg.MaxBatch && !waiter {
				select {
				case it, ok := <-r.q:
					if !ok {
						break linger
					}
					batch = append(batch, it)
					waiter = it.wait != nil
				case <-timer.C:
					break linger
				}
			}
			timer.Stop()
		}
		r.cfg.Metrics.AuditQueueDepth(len(r.q))
		r.write(batch)
	}
}

// anchor publishes the chain head: an external copy of it lets verify
// detect truncation of the tail. It also publishes how far the copy into
// the FHIR store has got ("copied"): verify --anchors reports a missing
// AuditEvent up to there as deleted whatever the database says.
func (r *Recorder) anchor() {
	copied := min(r.copied.Load(), r.seq)
	r.anchoredCopied = copied
	r.cfg.Logger.Info("audit chain head", "chain", r.chain, "seq", r.seq, "hash", r.prev, "copied", copied)
	if r.cfg.Stream != nil {
		line, _ := json.Marshal(map[string]any{"anchor": true, "chain": r.chain, "seq": r.seq, "hash": r.prev, "copied": copied, "time": r.cfg.Now().UTC()})
		r.cfg.Stream.Write(append(line, '\n'))
	}
}

// resync takes the chain's head from the database after a batch was
// reported not written, so the next batch links to what is really stored:
// a batch is all or nothing, but it may have been committed while both
// its reply and write's check of the head failed. Until the head is read,
// every batch fails as lost rather than write records that would break
// the chain.
func (r *Recorder) resync(ctx context.Context) {
	seq, hash, err := r.cfg.DB.Head(ctx, r.chain)
	if err != nil {
		r.resyncErr = fmt.Errorf("audit: chain head unknown: %w", err)
		return
	}
	if seq > 0 {
		r.seq, r.prev = seq, hash
	}
	r.resyncErr = nil
}

// write commits one batch: chain rows first (the durable record), then the
// waiters are released, then the records become AuditEvent resources.
func (r *Recorder) write(batch []*item) {
	ctx := context.Background()
	if r.resyncErr != nil {
		r.resync(ctx)
	}
	rows := make([]Row, len(batch))
	aes := make([]*auditEvent, len(batch))
	seq, prev := r.seq, r.prev
	src := Source{Site: r.cfg.Site, Instance: r.chain}
	// Records up to wm are in the FHIR store now; each record of the batch
	// says so under its hash.
	wm := r.copied.Load()
	for i, it := range batch {
		seq++
		at := it.e.Time.UTC().Truncate(time.Millisecond)
		id := recordID()
		ae := newAuditEvent(&it.e, id, at, src)
		body := ae.appendJSON(make([]byte, 0, 2560))
		aes[i] = ae
		h := r.link.hashV2(r.chain, seq, prev, wm, body)
		rows[i] = Row{Chain: r.chain, Seq: seq, PrevHash: prev, Hash: h, ResourceID: id, Version: 1, Recorded: at, Body: body, Format: 2, Watermark: wm}
		prev = h
	}
	err := r.resyncErr
	if err == nil {
		for attempt := 0; attempt < 3; attempt++ {
			if err = r.cfg.DB.Append(ctx, rows); err == nil {
				break
			}
			// The error may hide a commit whose reply was lost (a
			// connection dropped after COMMIT): then the chain ends with
			// this batch, and a retry would only collide with it.
			if h, hash, herr := r.cfg.DB.Head(ctx, r.chain); herr == nil && h == seq && hash == prev {
				err = nil
				break
			}
			time.Sleep(time.Duration(100*(attempt+1)) * time.Millisecond)
		}
	}
	if err != nil {
		r.cfg.Logger.Error("audit batch not written", "records", len(rows), "err", err)
		for _, it := range batch {
			r.lost(&it.e, "database write failed")
			if it.wait != nil {
				it.wait <- ErrUnavailable
			}
		}
		r.resync(ctx)
		return
	}
	r.seq, r.prev = seq, prev
	r.handoff(rows, aes)
	r.lastBatch.Store(time.Now().UnixNano())
	oldest := batch[0].at
	for _, it := range batch {
		if it.wait != nil {
			it.wait <- nil
		}
		if it.at.Before(oldest) {
			oldest = it.at
		}
	}
	r.cfg.Metrics.AuditWritten(len(rows), r.cfg.Now().Sub(oldest))
	if r.cfg.Stream != nil {
		var buf bytes.Buffer
		for i := range rows {
			writeStreamLine(&buf, &rows[i])
		}
		if _, err := r.cfg.Stream.Write(buf.Bytes()); err != nil {
			r.cfg.Logger.Error("audit stream write failed", "err", err)
		}
	}
	if r.cfg.Observer != nil {
		for _, it := range batch {
			r.cfg.Observer.Observe(&it.e)
		}
	}
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// StreamLine is one JSON line of the audit stream.
type StreamLine struct {
	Chain    string `json:"chain"`
	Seq      int64  `json:"seq"`
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
	// Watermark is the record's copy watermark (format 2, see HashV2).
	Watermark *int64          `json:"watermark,omitempty"`
	Resource  json.RawMessage `json:"resource"`
}

func writeStreamLine(buf *bytes.Buffer, row *Row) {
	l := StreamLine{Chain: row.Chain, Seq: row.Seq, PrevHash: row.PrevHash, Hash: row.Hash, Resource: row.Body}
	if row.Format >= 2 {
		l.Watermark = &row.Watermark
	}
	b, _ := json.Marshal(l)
	buf.Write(b)
	buf.WriteByte('\n')
}

// materialize stores rows as AuditEvent resources and marks them done.
func (r *Recorder) materialize(ctx context.Context, rows []Row) error {
	return Materialize(ctx, r.cfg.DB, r.cfg.Store, r.cfg.Indexer, rows)
}

// Materialize stores chain rows as AuditEvent resources (idempotently:
// rows already stored are skipped) and marks them in the chain table.
func Materialize(ctx context.Context, db *DB, st Updater, ix Indexer, rows []Row) error {
	return materialize(ctx, db, st, ix, rows, nil, false)
}

// materialize is Materialize with doc (when set) giving the AuditEvent of
// a row's body when the caller has it (nil: decode the bytes).
func materialize(ctx context.Context, db *DB, st Updater, ix Indexer, rows []Row, doc func(*Row) *auditEvent, direct bool) error {
	if len(rows) == 0 {
		return nil
	}
	writes := make([]*store.Write, 0, len(rows))
	for i := range rows {
		var ae *auditEvent
		if doc != nil {
			ae = doc(&rows[i])
		}
		w, err := prepareWrite(ix, &rows[i], ae, direct)
		if err != nil {
			return err
		}
		writes = append(writes, w)
	}
	err := st.Update(ctx, func(tx store.Tx) error {
		// Every record is a new AuditEvent (version 1): where the store
		// can, they go in one round trip.
		if c, ok := tx.(store.Creator); ok && allNew(writes) {
			return c.PutNew(ctx, writes)
		}
		for _, w := range writes {
			if err := tx.Put(ctx, w); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, store.ErrConflict) {
		// Some are stored already (recovery racing the writer): one by one,
		// in seq order, stopping at the first failure: a record is in the
		// store only if every earlier record of its chain is (verify relies
		// on it).
		err = nil
		for _, w := range writes {
			e := st.Update(ctx, func(tx store.Tx) error { return tx.Put(ctx, w) })
			if e != nil && !errors.Is(e, store.ErrConflict) {
				err = e
				break
			}
		}
	}
	if err != nil {
		return err
	}
	// Rows come in seq order per chain: record how far each got.
	last := map[string]int64{}
	for _, r := range rows {
		last[r.Chain] = max(last[r.Chain], r.Seq)
	}
	for ch, seq := range last {
		if err := db.SetCopied(ctx, ch, seq); err != nil {
			return err
		}
	}
	return nil
}

// allNew reports whether every write creates its resource (version 1).
func allNew(ws []*store.Write) bool {
	for _, w := range ws {
		if w.Version != 1 || w.Deleted {
			return false
		}
	}
	return true
}

// prepareWrite builds the FHIR store write of row; ae, when not nil, is
// the AuditEvent row.Body encodes (the copy of this process's own records
// has it), indexed by directIndex when direct, else by ix; either way
// without the rows no search tells apart from others (compactIndex).
func prepareWrite(ix Indexer, row *Row, ae *auditEvent, direct bool) (*store.Write, error) {
	if ae == nil && direct {
		// Not handed over (a copy far behind, recovery, another
		// process's chain): decoded from the stored bytes into the
		// record's own type when that is exactly what it holds.
		ae = decodeOwn(row.Body)
	}
	if ae != nil && direct {
		if idx, ok := ae.directIndex(); ok {
			compactIndex(&idx)
			return &store.Write{Type: "AuditEvent", ID: row.ResourceID, Version: row.Version, LastUpdated: row.Recorded,
				Method: "POST", Body: row.Body, Index: idx}, nil
		}
	}
	var m map[string]any
	if ae != nil {
		m = ae.toMap()
	} else {
		dec := json.NewDecoder(bytes.NewReader(row.Body))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("audit: stored record %s/%d: %w", row.Chain, row.Seq, err)
		}
	}
	idx, err := ix.Extract(m)
	if err != nil {
		return nil, fmt.Errorf("audit: index record %s/%d: %w", row.Chain, row.Seq, err)
	}
	compactIndex(&idx)
	return &store.Write{Type: "AuditEvent", ID: row.ResourceID, Version: row.Version, LastUpdated: row.Recorded,
		Method: "POST", Body: row.Body, Index: idx}, nil
}

// decodeOwn returns the auditEvent that body is the rendering of, or nil
// when body is anything else (an older format, an element this version
// does not write): then the copy extracts the index generically, from
// every element there is. A copy far behind the writer (more than
// maxHandoff records) reads every record this way; the generic
// extraction costs several times more, so under sustained load the copy
// fell further behind the further it was.
func decodeOwn(body []byte) *auditEvent {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var ae auditEvent
	if dec.Decode(&ae) != nil || dec.More() {
		return nil
	}
	if !bytes.Equal(ae.appendJSON(make([]byte, 0, len(body))), body) {
		return nil
	}
	return &ae
}

// maxHandoff bounds the AuditEvents handed from the writer to the copy
// (a copy far behind decodes the rest from the chain table).
const maxHandoff = 16384

// handoff keeps the AuditEvents of a committed batch for the copy.
func (r *Recorder) handoff(rows []Row, aes []*auditEvent) {
	r.docsMu.Lock()
	defer r.docsMu.Unlock()
	for i := range rows {
		if len(r.docs) >= maxHandoff {
			return
		}
		r.docs[rows[i].Seq] = aes[i]
	}
}

// doc returns row's AuditEvent when this process wrote it and still
// holds it (nil: decode the stored bytes).
func (r *Recorder) doc(row *Row) *auditEvent {
	if row.Chain != r.chain {
		return nil
	}
	r.docsMu.Lock()
	ae := r.docs[row.Seq]
	r.docsMu.Unlock()
	return ae
}

// forget drops the handed-off AuditEvents of rows (copied or found
// copied already).
func (r *Recorder) forget(rows []Row) {
	r.docsMu.Lock()
	defer r.docsMu.Unlock()
	for i := range rows {
		if rows[i].Chain == r.chain {
			delete(r.docs, rows[i].Seq)
		}
	}
}

// recoverLoop runs recover at start and then every RecoverEvery, beside
// the copy of this process's own chain, so that a long recovery (a crashed
// instance's backlog) holds back neither this chain's records nor its
// copy-lag gauge. It stops with the recorder.
func (r *Recorder) recoverLoop() {
	defer close(r.rdone)
	t := time.NewTicker(max(r.cfg.RecoverEvery, time.Second))
	defer t.Stop()
	for {
		if err := r.recover(); err != nil {
			r.cfg.Logger.Error("audit recovery incomplete: records stay in the chain table until the next attempt", "err", err)
		}
		if r.cfg.RecoverEvery <= 0 {
			return
		}
		select {
		case <-t.C:
		case <-r.mstop:
			return
		}
	}
}

// recover copies the records of chains whose process stopped or crashed
// between its chain commit and its copy (chains idle for a minute, so
// live writers of other instances are left alone; never this process's
// own chain, which its copy retries). It runs at the copy's duty cycle
// and stops with the recorder.
func (r *Recorder) recover() error {
	bg := database.Background(context.Background())
	stale, err := r.cfg.DB.Stale(bg, r.cfg.Now().Add(-time.Minute))
	if err != nil {
		return err
	}
	delete(stale, r.chain)
	total := 0
	defer func() {
		// Info, not a warning: the admin commands' records (lapis client
		// create, …) come this way in normal use, as well as those of an
		// instance that stopped before its copy caught up.
		if total > 0 {
			r.cfg.Logger.Info("audit records of stopped processes (admin commands, or an instance that stopped before its copy caught up) copied into the FHIR store", "records", total, "chains", len(stale))
		}
	}()
	for chain, cursor := range stale {
		for {
			select {
			case <-r.mstop:
				return nil
			default:
			}
			rows, err := r.cfg.DB.Page(bg, chain, cursor, r.cfg.CopyBatch)
			if err != nil || len(rows) == 0 {
				if err != nil {
					return err
				}
				break
			}
			began := time.Now()
			if err := r.materialize(bg, rows); err != nil {
				return err
			}
			total += len(rows)
			cursor = rows[len(rows)-1].Seq
			if r.cfg.CopyDuty < 1 {
				select {
				case <-time.After(time.Duration(float64(time.Since(began)) * (1/r.cfg.CopyDuty - 1))):
				case <-r.mstop:
					return nil
				}
			}
		}
	}
	return nil
}
