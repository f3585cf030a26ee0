package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	adminclient "github.com/lapis-health/lapis/client/admin"
)

// rateLimitFlag is the --rate-limit of client and apikey create.
type rateLimitFlag struct {
	RateLimit      string `name:"rate-limit" help:"The credential's own limit on the FHIR API, N/PERIOD in cost units (e.g. 500/s), none (no per-client limit) or default (the server's --rate-limit-client, or --rate-limit-system for system/ scopes only)." placeholder:"N/PERIOD|none|default"`
	RateLimitBurst int    `name:"rate-limit-burst" help:"Burst of --rate-limit, in cost units (0 = N)." placeholder:"UNITS"`
}

func (f rateLimitFlag) rateLimit() adminclient.RateLimit {
	return adminclient.RateLimit{Limit: f.RateLimit, Burst: f.RateLimitBurst}
}

// rateLimitText shows a credential's limit in a listing.
func rateLimitText(r adminclient.RateLimit) string {
	switch r.Limit {
	case "", adminclient.RateLimitDefault:
		return adminclient.RateLimitDefault
	case adminclient.RateLimitNone:
		return r.Limit
	}
	return r.Limit + " burst " + strconv.Itoa(r.Burst)
}

// updateFlags are the changes of client update and apikey update.
type updateFlags struct {
	RateLimit      string `name:"rate-limit" required:"" help:"The credential's own limit on the FHIR API: N/PERIOD in cost units (e.g. 500/s), none (no per-client limit) or default (the server's default for its class)." placeholder:"N/PERIOD|none|default"`
	RateLimitBurst int    `name:"rate-limit-burst" help:"Burst of --rate-limit, in cost units (0 = N)." placeholder:"UNITS"`
	JSON           bool   `name:"json" help:"Print one JSON object {\"id\",\"rate_limit\",\"rate_limit_burst\"}."`
}

// set sets the rate limit of the client or API key (kind) id to the flags
// with set (an adminBackend method) and prints the limit it now has.
func (f updateFlags) set(e *env, af *adminFlags, kind, id string,
	set func(adminBackend, context.Context, string, adminclient.RateLimit) (*adminclient.RateLimit, error)) error {
	return af.run(e, func(ctx context.Context, b adminBackend) error {
		r, err := set(b, ctx, id, adminclient.RateLimit{Limit: f.RateLimit, Burst: f.RateLimitBurst})
		if err != nil {
			return notFound(err, kind, id)
		}
		return f.print(e, id, r)
	})
}

func (f updateFlags) print(e *env, id string, r *adminclient.RateLimit) error {
	if f.JSON {
		return json.NewEncoder(e.stdout).Encode(struct {
			ID string `json:"id"`
			adminclient.RateLimit
		}{id, *r})
	}
	fmt.Fprintf(e.stdout, "%s: rate limit %s\n", id, rateLimitText(*r))
	return nil
}

type clientUpdateCmd struct {
	adminFlags
	ID string `arg:"" name:"ID" help:"Client id."`
	updateFlags
}

func (c *clientUpdateCmd) Run(e *env) error {
	return c.set(e, &c.adminFlags, "client", c.ID, adminBackend.SetClientRateLimit)
}

type apikeyUpdateCmd struct {
	adminFlags
	ID string `arg:"" name:"ID" help:"Key id (ak_...)."`
	updateFlags
}

func (c *apikeyUpdateCmd) Run(e *env) error {
	return c.set(e, &c.adminFlags, "api key", c.ID, adminBackend.SetAPIKeyRateLimit)
}
