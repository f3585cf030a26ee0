package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/lapis-health/lapis/internal/audit"
)

// auditCmd groups the audit-trail commands.
type auditCmd struct {
	Verify auditVerifyCmd `cmd:"" help:"Check every audit hash chain; exit 1 on any modified, deleted, reordered or inserted record."`
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
		if err := enc.Encode(map[string]any{"anchor": true, "chain": h.Chain, "seq": h.Seq, "hash": h.Hash}); err != nil {
			return err
		}
	}
	return nil
}

type auditVerifyCmd struct {
	dbFlags
	JSON    bool   `name:"json" help:"Print the report as one JSON object."`
	Anchors string `name:"anchors" help:"An audit stream file (--audit-stream) whose chain heads detect truncation of the tail." placeholder:"FILE" type:"existingfile"`
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
	db, err := audit.OpenDB(e.ctx, cfg.Database.URL, cfg.Database.DataDir)
	if err != nil {
		return err
	}
	defer db.Close()
	rep, err := audit.Verify(e.ctx, db, a.Store, anchors)
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
	}
	if !rep.OK {
		return errFindings
	}
	return nil
}
