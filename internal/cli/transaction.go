package cli

import (
	"encoding/json"
	"fmt"
)

// transactionCmd sends transaction and batch Bundles to a FHIR server:
// the remote counterpart of "lapis import" for Bundle files.
type transactionCmd struct {
	connFlags
	Files []string `arg:"" name:"FILE" help:"Transaction or batch Bundle JSON files (e.g. Synthea's), sent in order, one request each; - for standard input."`
}

// bundleHead is what a command reads of a Bundle before sending it.
type bundleHead struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
}

// requestBundle returns the type of body when it is a transaction or
// batch Bundle, else "".
func requestBundle(body []byte) string {
	var h bundleHead
	if json.Unmarshal(body, &h) != nil || h.ResourceType != "Bundle" {
		return ""
	}
	if h.Type == "transaction" || h.Type == "batch" {
		return h.Type
	}
	return ""
}

// transactionSummary is the line printed per file.
type transactionSummary struct {
	File    string `json:"file"`
	Type    string `json:"type"`
	Entries int    `json:"entries"`
	// Failed counts the entries answered with an error (a batch's; a
	// transaction fails whole).
	Failed int `json:"failed"`
}

// Run checks every file first (a usage error sends nothing), then posts
// them in order, stopping at the first that fails. It holds one file at a
// time (each is read again to be sent), standard input excepted, which
// can be read only once.
func (c *transactionCmd) Run(e *env) error {
	var stdin []byte
	for _, f := range c.Files {
		b, err := readInput(e, f)
		if err != nil {
			return err
		}
		if requestBundle(b) == "" {
			return usagef("%s: not a transaction or batch Bundle", f)
		}
		if f == "-" {
			stdin = b
		}
	}
	cl, err := c.newClient(e)
	if err != nil {
		return err
	}
	for _, f := range c.Files {
		body := stdin
		if f != "-" {
			if body, err = readInput(e, f); err != nil {
				return err
			}
		}
		typ := requestBundle(body)
		if typ == "" {
			return usagef("%s: not a transaction or batch Bundle", f) // changed since the check
		}
		post := cl.Transaction
		if typ == "batch" {
			post = cl.Batch
		}
		b, err := post(e.ctx, json.RawMessage(body))
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		s := transactionSummary{File: f, Type: typ, Entries: len(b.Entries)}
		for _, en := range b.Entries {
			if en.Response != nil && en.Response.StatusCode() >= 400 {
				s.Failed++
			}
		}
		line, err := json.Marshal(s)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(e.stdout, "%s\n", line); err != nil {
			return err
		}
	}
	return nil
}
