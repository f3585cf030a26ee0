package cli

import (
	"encoding/json"
	"fmt"
)

type reindexCmd struct {
	dbFlags
	Types []string `name:"type" help:"Resource type to re-index (repeatable; default all)."`
	JSON  bool     `name:"json" help:"Print the result as one JSON object on stdout."`
}

func (c *reindexCmd) Run(e *env) error {
	a, _, err := openApp(e, c.dbFlags)
	if err != nil {
		return err
	}
	defer a.Close()
	progress := func(int) {}
	if isTerminal(e.stderr) {
		progress = func(n int) { fmt.Fprintf(e.stderr, "\r%d resources re-indexed", n) }
	}
	n, err := a.Service.Reindex(e.ctx, c.Types, progress)
	if isTerminal(e.stderr) {
		fmt.Fprintln(e.stderr)
	}
	if err != nil {
		return err
	}
	if n > 0 {
		if err := a.RefreshStatistics(e.ctx); err != nil {
			return err
		}
	}
	if c.JSON {
		return json.NewEncoder(e.stdout).Encode(map[string]int{"reindexed": n})
	}
	_, err = fmt.Fprintf(e.stdout, "re-indexed %d resources\n", n)
	return err
}
