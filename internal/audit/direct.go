package audit

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Direct is the audit sink of a short-lived process, such as an admin
// command: Commit appends the event to the process's own hash chain in the
// chain table, in the caller's goroutine, and returns once it is durable.
// There is no queue, no writer goroutine and no FHIR store: the records
// become AuditEvent resources when a running server's recorder copies
// chains left idle (see Recorder). The chain is registered on the first
// Commit, so a process that records nothing leaves no chain. Safe for
// concurrent use.
type Direct struct {
	db   *DB
	site string
	now  func() time.Time

	mu    sync.Mutex
	chain string // "" until the first Commit
	seq   int64
	prev  string
}

// NewDirect returns a Direct sink appending to db; site is the FHIR base
// URL (AuditEvent.source.site).
func NewDirect(db *DB, site string) *Direct {
	return &Direct{db: db, site: site, now: time.Now, prev: Genesis}
}

// Chain returns the process's chain id ("" before the first Commit).
func (d *Direct) Chain() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.chain
}

// Commit appends e as the next link of the chain and returns once it is
// durable; on error nothing was appended (ErrUnavailable wraps the cause).
func (d *Direct) Commit(ctx context.Context, e Event) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	if e.Time.IsZero() {
		e.Time = now
	}
	if d.chain == "" {
		chain := uuid.NewString()
		host, _ := os.Hostname()
		if err := d.db.StartChain(ctx, chain, host, now); err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		d.chain = chain
	}
	at := e.Time.UTC().Truncate(time.Millisecond)
	id := recordID()
	body := Render(&e, id, at, Source{Site: d.site, Instance: d.chain})
	seq := d.seq + 1
	h := Hash(d.chain, seq, d.prev, body)
	row := Row{Chain: d.chain, Seq: seq, PrevHash: d.prev, Hash: h, ResourceID: id, Version: 1, Recorded: at, Body: body}
	if err := d.db.Append(ctx, []Row{row}); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	d.seq, d.prev = seq, h
	return nil
}

// Record implements Sink: Commit, logging a failure (the record is then
// lost, never silently).
func (d *Direct) Record(ctx context.Context, e Event) {
	if err := d.Commit(ctx, e); err != nil {
		slog.Default().Error("audit record lost", "reason", err.Error(), "kind", string(e.Kind), "client_id", e.ClientID)
	}
}
