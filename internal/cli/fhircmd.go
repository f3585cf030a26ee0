package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"strings"

	"github.com/lapis-health/lapis/client"
)

// maxInput bounds a resource read from a file or standard input.
const maxInput = 64 << 20

var (
	refType = regexp.MustCompile(`^[A-Z][A-Za-z]{1,63}$`)
	refID   = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
)

// ref is a parsed TYPE/ID[/_history/VID] argument.
type ref struct{ typ, id, vid string }

func parseRef(s string, history bool) (ref, error) {
	parts := strings.Split(s, "/")
	var r ref
	switch {
	case len(parts) == 2:
		r = ref{typ: parts[0], id: parts[1]}
	case history && len(parts) == 4 && parts[2] == "_history":
		r = ref{typ: parts[0], id: parts[1], vid: parts[3]}
		if !refID.MatchString(r.vid) {
			return r, usagef("%q: bad version id", s)
		}
	default:
		if history {
			return r, usagef("%q: want TYPE/ID or TYPE/ID/_history/VERSION", s)
		}
		return r, usagef("%q: want TYPE/ID", s)
	}
	if !refType.MatchString(r.typ) {
		return r, usagef("%q: %q is not a resource type", s, r.typ)
	}
	if !refID.MatchString(r.id) {
		return r, usagef("%q: ids are 1-64 letters, digits, '-' and '.'", s)
	}
	return r, nil
}

// readInput reads a resource from a file or "-" (standard input).
func readInput(e *env, name string) ([]byte, error) {
	var r io.Reader
	if name == "-" {
		r = e.stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxInput {
		return nil, fmt.Errorf("%s: larger than %d MiB", name, maxInput>>20)
	}
	if !json.Valid(b) {
		return nil, usagef("%s: not valid JSON", name)
	}
	return b, nil
}

// printResource writes a resource's JSON and a newline; for an answer
// without a body (Prefer: return=minimal) its type, id and version.
func printResource(e *env, r *client.Resource) error {
	raw := []byte(r.Raw)
	if len(raw) == 0 {
		v := map[string]any{"resourceType": r.Type, "id": r.ID}
		if r.VersionID != "" {
			v["meta"] = map[string]string{"versionId": r.VersionID}
		}
		var err error
		if raw, err = json.Marshal(v); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(e.stdout, "%s\n", raw)
	return err
}

type getCmd struct {
	connFlags
	Ref string `arg:"" name:"TYPE/ID" help:"Resource to read: TYPE/ID, or TYPE/ID/_history/VERSION for a version."`
}

func (c *getCmd) Run(e *env) error {
	r, cl, err := c.refClient(e, c.Ref, true)
	if err != nil {
		return err
	}
	if r.vid != "" {
		return printResult(e)(cl.VRead(e.ctx, r.typ, r.id, r.vid))
	}
	return printResult(e)(cl.Read(e.ctx, r.typ, r.id))
}

// refClient parses a TYPE/ID[/_history/VID] argument (history: whether
// the version form is allowed) and connects to the server.
func (f *connFlags) refClient(e *env, s string, history bool) (ref, *client.Client, error) {
	r, err := parseRef(s, history)
	if err != nil {
		return r, nil, err
	}
	cl, err := f.newClient(e)
	return r, cl, err
}

// inputClient reads a resource from file (see readInput) and connects to
// the server.
func (f *connFlags) inputClient(e *env, file string) ([]byte, *client.Client, error) {
	body, err := readInput(e, file)
	if err != nil {
		return nil, nil, err
	}
	cl, err := f.newClient(e)
	return body, cl, err
}

// printResult returns a function that prints the resource a request
// answered with (printResource), or returns the request's error.
func printResult(e *env) func(*client.Resource, error) error {
	return func(res *client.Resource, err error) error {
		if err != nil {
			return err
		}
		return printResource(e, res)
	}
}

type searchCmd struct {
	connFlags
	Type   string   `arg:"" name:"TYPE" help:"Resource type to search."`
	Params []string `arg:"" optional:"" name:"PARAM=VALUE" help:"Search parameters, e.g. name=smith birthdate=ge1970-01-01 _count=50."`
	All    bool     `name:"all" help:"Follow next links and return every match (not only the first page)."`
	NDJSON bool     `name:"ndjson" help:"Print the matching resources one per line instead of a Bundle."`
	Max    int      `name:"max" help:"With --all, stop after this many matches (0: no limit)." placeholder:"N"`
}

func (c *searchCmd) query() (url.Values, error) {
	if !refType.MatchString(c.Type) {
		return nil, usagef("%q is not a resource type", c.Type)
	}
	if c.Max < 0 {
		return nil, usagef("--max must not be negative")
	}
	if c.Max > 0 && !c.All {
		return nil, usagef("--max needs --all (without it only the first page is printed; limit its size with _count=N)")
	}
	q := url.Values{}
	for _, p := range c.Params {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, usagef("%q: search parameters are NAME=VALUE", p)
		}
		q.Add(k, v)
	}
	return q, nil
}

func (c *searchCmd) Run(e *env) error {
	q, err := c.query()
	if err != nil {
		return err
	}
	cl, err := c.newClient(e)
	if err != nil {
		return err
	}
	out := bufio.NewWriter(e.stdout)
	defer out.Flush()
	if !c.All {
		b, err := cl.SearchPage(e.ctx, c.Type, q)
		if err != nil {
			return err
		}
		if !c.NDJSON {
			_, err = fmt.Fprintf(out, "%s\n", b.Raw)
			return err
		}
		for _, en := range b.Entries {
			if en.Resource != nil && (en.SearchMode == "" || en.SearchMode == "match") {
				fmt.Fprintf(out, "%s\n", compact(en.Resource.Raw))
			}
		}
		return out.Flush()
	}
	// Every page: stream the matches, as NDJSON or as one searchset Bundle.
	n := 0
	if !c.NDJSON {
		fmt.Fprint(out, `{"resourceType":"Bundle","type":"searchset","entry":[`)
	}
	for res, err := range cl.SearchAll(e.ctx, c.Type, q) {
		if err != nil {
			return err
		}
		if c.NDJSON {
			fmt.Fprintf(out, "%s\n", compact(res.Raw))
		} else {
			if n > 0 {
				out.WriteByte(',')
			}
			entry, err := json.Marshal(map[string]any{"fullUrl": strings.TrimRight(cl.BaseURL(), "/") + "/" + res.Type + "/" + res.ID,
				"resource": res.Raw, "search": map[string]string{"mode": "match"}})
			if err != nil {
				return err
			}
			out.Write(entry)
		}
		n++
		if c.Max > 0 && n >= c.Max {
			break
		}
	}
	if !c.NDJSON {
		fmt.Fprintf(out, `],"total":%d}`+"\n", n)
	}
	return out.Flush()
}

// compact returns raw JSON on one line (NDJSON).
func compact(raw json.RawMessage) []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	return b.Bytes()
}

type createCmd struct {
	connFlags
	File        string `arg:"" name:"FILE" help:"Resource JSON file, or - for standard input."`
	IfNoneExist string `name:"if-none-exist" help:"Conditional create: only if no resource matches this search, e.g. identifier=http://hospital.example|123." placeholder:"QUERY"`
}

func (c *createCmd) Run(e *env) error {
	body, err := readInput(e, c.File)
	if err != nil {
		return err
	}
	if t := requestBundle(body); t != "" {
		// [base]/Bundle would store it as a resource, its entries unwritten.
		return usagef("%s is a %s Bundle: send it with lapis transaction", c.File, t)
	}
	cl, err := c.newClient(e)
	if err != nil {
		return err
	}
	var opts []client.WriteOption
	if c.IfNoneExist != "" {
		opts = append(opts, client.IfNoneExist(c.IfNoneExist))
	}
	return printResult(e)(cl.Create(e.ctx, json.RawMessage(body), opts...))
}

type updateCmd struct {
	connFlags
	Ref     string `arg:"" name:"TYPE/ID" help:"Resource to replace."`
	File    string `arg:"" name:"FILE" help:"Resource JSON file, or - for standard input."`
	IfMatch string `name:"if-match" help:"Only if the current version is this one (optimistic locking; 412 otherwise)." placeholder:"VERSION"`
}

func (c *updateCmd) Run(e *env) error {
	r, err := parseRef(c.Ref, false)
	if err != nil {
		return err
	}
	body, cl, err := c.inputClient(e, c.File)
	if err != nil {
		return err
	}
	var opts []client.WriteOption
	if c.IfMatch != "" {
		opts = append(opts, client.IfMatch(c.IfMatch))
	}
	return printResult(e)(cl.Update(e.ctx, r.typ, r.id, body, opts...))
}

type deleteCmd struct {
	connFlags
	Ref string `arg:"" name:"TYPE/ID" help:"Resource to delete."`
}

func (c *deleteCmd) Run(e *env) error {
	r, cl, err := c.refClient(e, c.Ref, false)
	if err != nil {
		return err
	}
	return cl.Delete(e.ctx, r.typ, r.id)
}
