package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/fhir/extract"
)

// auditCmd groups the audit-trail commands.
type auditCmd struct {
	Verify auditVerifyCmd `cmd:"" help:"Check every audit hash chain and every stored copy of its AuditEvents (current, history, search index); exit 1 on any finding."`
	Heads  auditHeadsCmd  `cmd:"" help:"Print the head (last seq and hash) of every chain as JSON lines, to keep outside the database and pass to verify --anchors."`
}

type auditHeadsCmd struct {
	dbFlags
}

func (c *auditHeadsCmd) Run(e *env) error {
	cfg, err := c.dbFlags.config()
	if err != nil {
		return err
	}
	db, err := audit.OpenDB(e.ctx, cfg.Database.URL, cfg.Database.DataDir)
	if err != nil {
		return err
	}
	defer db.Close()
	heads, err := db.Heads(e.ctx)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(e.stdout)
	for _, h := range heads {
		if err := enc.Encode(map[string]any{"anchor": true, "chain": h.Chain, "seq": h.Seq, "hash": h.Hash, "copied": h.Copied}); err != nil {
			return err
		}
	}
	return nil
}

type auditVerifyCmd struct {
	dbFlags
	JSON    bool   `name:"json" help:"Print the report as one JSON object."`
	Anchors string `name:"anchors" help:"An audit stream file (--audit-stream) or lapis audit heads output whose chain heads detect truncation of the tail, and whose copy watermarks deleted AuditEvents." placeholder:"FILE" type:"existingfile"`
	// MaxPendingAge bounds how long a record may legitimately wait for its
	// copy into the FHIR store.
	MaxPendingAge time.Duration `name:"max-pending-age" default:"1h" help:"Report records older than this that are not in the FHIR store, with nothing showing they were copied, as stale (0: never)."`
	RepairIndex   bool          `name:"repair-index" help:"Rebuild, from the chain, the search index rows of the AuditEvents reported with finding index (the findings are still reported)."`
}

// errFindings makes the command exit non-zero after printing its report.
var errFindings = errors.New("audit trail verification failed")

func (c *auditVerifyCmd) Run(e *env) error {
	var anchors map[string]audit.Anchor
	if c.Anchors != "" {
		f, err := os.Open(c.Anchors)
		if err != nil {
			return err
		}
		anchors, err = audit.ReadAnchors(f)
		f.Close()
		if err != nil {
			return err
		}
	}
	a, cfg, err := openApp(e, c.dbFlags)
	if err != nil {
		return err
	}
	defer a.Close()
	db, err := audit.NewDB(e.ctx, a.DB)
	if err != nil {
		return err
	}
	ex, err := extract.New(a.Registry, cfg.FHIRBase())
	if err != nil {
		return err
	}
	maxAge := c.MaxPendingAge
	if maxAge <= 0 {
		maxAge = -1 // no bound
	}
	rep, err := audit.VerifyWith(e.ctx, db, a.Store, audit.Options{Anchors: anchors, Indexer: ex, MaxPendingAge: maxAge, RepairIndex: c.RepairIndex})
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if c.JSON {
		b, _ := json.Marshal(rep)
		fmt.Fprintln(e.stdout, string(b))
	} else {
		for _, f := range rep.Findings {
			where := f.Chain
			if f.Seq > 0 {
				where += fmt.Sprintf(" seq %d", f.Seq)
			}
			if f.To > 0 {
				where += fmt.Sprintf("-%d", f.To)
			}
			if f.Resource != "" {
				where += " " + f.Resource
			}
			fmt.Fprintf(e.stdout, "%s: %s: %s\n", f.Kind, where, f.Detail)
		}
		status := "OK"
		if !rep.OK {
			status = "FAILED"
		}
		fmt.Fprintf(e.stdout, "%s: %d chains, %d records, %d pending, %d findings\n", status, rep.Chains, rep.Records, rep.Pending, len(rep.Findings))
		if rep.Repaired > 0 {
			fmt.Fprintf(e.stdout, "index rows of %d AuditEvents rebuilt from the chain\n", rep.Repaired)
		}
	}
	if !rep.OK {
		return errFindings
	}
	return nil
}
