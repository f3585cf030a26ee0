package profile_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/lapis-health/lapis/client/profile"
)

func ExampleParse() {
	cfg, err := profile.Parse([]byte(`{
	  "default": "lapis",
	  "profiles": {
	    "lapis":   {"base_url": "https://lapis.example.org/fhir",
	                "auth": {"method": "client_credentials", "client_id": "integration-1",
	                         "client_secret": "env:LAPIS_CLIENT_SECRET", "scopes": ["system/Patient.rs"]}},
	    "partner": {"base_url": "https://fhir.partner.example/r4",
	                "auth": {"method": "basic", "username": "zato", "password": "file:/run/secrets/partner"},
	                "tls": {"mode": "ca_file", "ca_file": "/etc/lapis/partner-ca.pem"}}
	  }
	}`))
	if err != nil {
		log.Fatal(err)
	}
	for _, name := range cfg.Names() {
		p, _ := cfg.Get(name)
		fmt.Printf("%s: %s, secret %s%s\n", name, p.Auth.Method, p.Auth.ClientSecret, p.Auth.Password)
	}

	// An inline secret is refused, without repeating it.
	_, err = profile.Parse([]byte(`{"profiles": {"x": {"base_url": "https://h/fhir",
	  "auth": {"method": "apikey", "api_key": "my-inline-key"}}}}`))
	fmt.Println(err)
	// Output:
	// lapis: client_credentials, secret env:LAPIS_CLIENT_SECRET
	// partner: basic, secret file:/run/secrets/partner
	// inline secrets are refused: use "env:VARIABLE" or "file:/path"
}

func ExampleNewWatcher() {
	ctx := context.Background()
	w, err := profile.NewWatcher("/etc/lapis/profiles.json", 2*time.Second,
		profile.OnError(func(err error) { slog.Error("profiles: keeping the previous configuration", "err", err) }))
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	// The same client (and its cached token) until the profile, its
	// secrets or its CA bundle change.
	c, err := w.Client(ctx, "partner")
	if err != nil {
		log.Fatal(err)
	}
	obs, err := c.Read(ctx, "Observation", "123")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(obs.ID)
}
