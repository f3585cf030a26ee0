package config

import "testing"

func TestNormalize(t *testing.T) {
	c := Defaults()
	if err := c.Normalize(true); err != nil {
		t.Fatal(err)
	}
	if c.BaseURL != "http://127.0.0.1:8080" || c.FHIRBase() != "http://127.0.0.1:8080/fhir" {
		t.Fatalf("base %q", c.BaseURL)
	}
	c = Defaults()
	c.BaseURL = "https://fhir.example.org/"
	if err := c.Normalize(true); err != nil || c.BaseURL != "https://fhir.example.org" {
		t.Fatalf("%v %q", err, c.BaseURL)
	}
	bad := []func(*Config){
		func(c *Config) { c.Addr = "nope" },
		func(c *Config) { c.Addr = "0.0.0.0:80" },
		func(c *Config) { c.Addr = "10.1.2.3:80" },
		func(c *Config) { c.BaseURL = "ftp://x" },
		func(c *Config) { c.BaseURL = "http://x/?q=1" },
		func(c *Config) { c.DatabaseURL = "mysql://x" },
		func(c *Config) { c.MaxBodyBytes = 0 },
	}
	for i, f := range bad {
		c := Defaults()
		f(&c)
		if err := c.Normalize(true); err == nil {
			t.Errorf("case %d: expected error", i)
		}
	}
	c = Defaults()
	c.Addr = "0.0.0.0:8080"
	c.AllowRemote = true
	if err := c.Normalize(true); err != nil || c.BaseURL != "http://localhost:8080" {
		t.Fatalf("%v %q", err, c.BaseURL)
	}
}
