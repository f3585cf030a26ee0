package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/lapis-health/lapis/internal/importer"
)

type importCmd struct {
	dbFlags
	Files   []string `arg:"" name:"FILE" help:"Bundle (.json), NDJSON (.ndjson) or resource files." type:"existingfile"`
	JSON    bool     `name:"json" help:"Print the report as one JSON object on stdout."`
	Quiet   bool     `name:"quiet" short:"q" help:"No progress display."`
	Workers int      `name:"workers" default:"2" help:"Files processed at once."`
}

func (c *importCmd) Run(e *env) error {
	a, _, err := openApp(e, c.dbFlags)
	if err != nil {
		return err
	}
	defer a.Close()
	opts := importer.Options{Errors: e.stderr, Workers: c.Workers}
	if !c.Quiet && isTerminal(e.stderr) {
		opts.Progress = e.stderr
	}
	rep, err := importer.New(a.Service, opts).Import(e.ctx, c.Files)
	if err != nil {
		return err
	}
	if rep.Resources > 0 {
		if err := a.RefreshStatistics(e.ctx); err != nil {
			return err
		}
	}
	if c.JSON {
		if err := json.NewEncoder(e.stdout).Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(e.stdout, "imported %d resources from %d files in %.1fs (%.0f resources/s), %d failed\n",
			rep.Resources, rep.Files, rep.Seconds, rep.PerSecond, rep.Failed)
	}
	if rep.Failed > 0 {
		return fmt.Errorf("%d entries failed to import (listed above)", rep.Failed)
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
