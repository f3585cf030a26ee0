// Command uscoregen extracts from the official US Core implementation guide
// packages (hl7.fhir.us.core, FHIR NPM .tgz) what package definitions
// embeds as data/uscore.json:
//
//   - the SearchParameters the IG defines beyond R4 (a code R4 does not
//     define for that base, such as Patient race, ethnicity and
//     gender-identity), the union over the versions read: where versions
//     define the same parameter differently the newest definition is kept
//     and a note records the difference;
//   - per version, the us-core-server CapabilityStatement's resources:
//     profiles, search parameters, combinations and includes.
//
// Usage (from internal/fhir/definitions):
//
//	go run ./uscoregen -ig ../../../../shared/data/us-core-ig -out data
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/lapis-health/lapis/internal/fhir/definitions/wire"
)

// packages are the IG versions read, oldest first (the certification
// tracks of ONC (g)(10) v8).
var packages = []struct{ file, version string }{
	{"us_core_610.tgz", "6.1.0"},
	{"us_core_700.tgz", "7.0.0"},
}

func main() {
	ig := flag.String("ig", "../../../../shared/data/us-core-ig", "directory holding the US Core .tgz packages")
	r4 := flag.String("r4", "data/r4.json.gz", "the generated R4 definitions (to tell base parameters apart)")
	out := flag.String("out", "data", "output directory of uscore.json")
	profOut := flag.String("profiles", "../profile/data/uscore-profiles.json.gz", "output file of the profiles extract (package profile)")
	flag.Parse()
	b, pb, err := generate(*ig, *r4)
	if err != nil {
		log.Fatal(err)
	}
	for dst, content := range map[string][]byte{filepath.Join(*out, "uscore.json"): b, *profOut: pb} {
		if err := os.WriteFile(dst, content, 0o644); err != nil {
			log.Fatal(err)
		}
		log.Printf("wrote %s (%d bytes)", dst, len(content))
	}
}

type extension struct {
	URL         string      `json:"url"`
	ValueCode   string      `json:"valueCode"`
	ValueString string      `json:"valueString"`
	Extension   []extension `json:"extension"`
}

type capabilityStatement struct {
	Rest []struct {
		Resource []struct {
			Type             string      `json:"type"`
			Extension        []extension `json:"extension"`
			SupportedProfile []string    `json:"supportedProfile"`
			SearchInclude    []string    `json:"searchInclude"`
			SearchRevInclude []string    `json:"searchRevInclude"`
			SearchParam      []struct {
				Name       string      `json:"name"`
				Definition string      `json:"definition"`
				Type       string      `json:"type"`
				Extension  []extension `json:"extension"`
			} `json:"searchParam"`
		} `json:"resource"`
	} `json:"rest"`
}

const (
	extExpectation = "http://hl7.org/fhir/StructureDefinition/capabilitystatement-expectation"
	extCombination = "http://hl7.org/fhir/StructureDefinition/capabilitystatement-search-parameter-combination"
)

func expectation(exts []extension) string {
	for _, e := range exts {
		if e.URL == extExpectation {
			return e.ValueCode
		}
	}
	return ""
}

// generate reads the packages under ig and returns the content of
// data/uscore.json and data/uscore-profiles.json.gz.
func generate(ig, r4 string) ([]byte, []byte, error) {
	base, r4VS, err := baseParams(r4)
	if err != nil {
		return nil, nil, err
	}
	var profs wire.Profiles
	var out wire.USCore
	type seen struct {
		sp      wire.SearchParam
		version string
	}
	union := map[string]*seen{} // url -> newest definition
	var order []string
	for _, p := range packages {
		files, err := readPackage(filepath.Join(ig, p.file))
		if err != nil {
			return nil, nil, err
		}
		pv, err := profiles(files, p.version, r4VS)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", p.file, err)
		}
		profs.Versions = append(profs.Versions, pv)
		names := make([]string, 0, len(files))
		for n := range files {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if !strings.HasPrefix(n, "package/SearchParameter-") {
				continue
			}
			var sp wire.Source
			if err := json.Unmarshal(files[n], &sp); err != nil {
				return nil, nil, fmt.Errorf("%s %s: %w", p.file, n, err)
			}
			if isBase(base, &sp) {
				continue
			}
			w := sp.SearchParam()
			w.Description = firstLine(sp.Description)
			if prev := union[sp.URL]; prev != nil {
				if prev.sp.Expression != w.Expression {
					out.Notes = append(out.Notes, fmt.Sprintf("%s: expression %q in %s, %q in %s; %s kept",
						sp.URL, prev.sp.Expression, prev.version, w.Expression, p.version, p.version))
				}
				prev.sp, prev.version = w, p.version
				continue
			}
			if len(union) > 0 && p.version != packages[0].version {
				out.Notes = append(out.Notes, fmt.Sprintf("%s: new in %s", sp.URL, p.version))
			}
			union[sp.URL] = &seen{sp: w, version: p.version}
			order = append(order, sp.URL)
		}
		for _, u := range order {
			if union[u].version != p.version && p.version != packages[0].version {
				out.Notes = append(out.Notes, fmt.Sprintf("%s: absent from %s, kept from %s", u, p.version, union[u].version))
			}
		}
		v, err := capability(files["package/CapabilityStatement-us-core-server.json"], p.version)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", p.file, err)
		}
		out.Versions = append(out.Versions, v)
	}
	sort.Strings(order)
	for _, u := range order {
		out.SearchParams = append(out.SearchParams, union[u].sp)
	}
	b, err := json.MarshalIndent(&out, "", " ")
	if err != nil {
		return nil, nil, err
	}
	pb, err := gzipJSON(&profs)
	if err != nil {
		return nil, nil, err
	}
	return append(b, '\n'), pb, nil
}

// firstLine keeps the first paragraph of a description (the rest is
// Markdown guidance about the IG).
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(s)
}

func capability(raw []byte, version string) (wire.USCoreVersion, error) {
	v := wire.USCoreVersion{Version: version}
	if raw == nil {
		return v, fmt.Errorf("no CapabilityStatement-us-core-server.json")
	}
	var cs capabilityStatement
	if err := json.Unmarshal(raw, &cs); err != nil {
		return v, err
	}
	if len(cs.Rest) != 1 {
		return v, fmt.Errorf("us-core-server: %d rest entries, want 1", len(cs.Rest))
	}
	for _, r := range cs.Rest[0].Resource {
		res := wire.USCoreResource{
			Type: r.Type, Expectation: expectation(r.Extension),
			Profiles: r.SupportedProfile, Includes: r.SearchInclude, RevIncludes: r.SearchRevInclude,
		}
		for _, sp := range r.SearchParam {
			res.Search = append(res.Search, wire.USCoreSearch{
				Name: sp.Name, Definition: sp.Definition, Type: sp.Type, Expectation: expectation(sp.Extension),
			})
		}
		for _, e := range r.Extension {
			if e.URL != extCombination {
				continue
			}
			c := wire.USCoreCombination{Expectation: expectation(e.Extension)}
			for _, p := range e.Extension {
				if p.URL == "required" {
					c.Required = append(c.Required, p.ValueString)
				}
			}
			res.Combinations = append(res.Combinations, c)
		}
		v.Resources = append(v.Resources, res)
	}
	return v, nil
}

// baseParams returns "Type code" for every R4 search parameter, with
// "* code" for those defined on Resource and DomainResource, and the codes
// of the R4 value sets of required bindings.
func baseParams(r4 string) (map[string]bool, map[string][]string, error) {
	f, err := os.Open(r4)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, nil, err
	}
	var wf wire.File
	if err := json.NewDecoder(zr).Decode(&wf); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", r4, err)
	}
	m := map[string]bool{}
	for _, sp := range wf.SearchParams {
		for _, b := range sp.Base {
			if b == "Resource" || b == "DomainResource" {
				b = "*"
			}
			m[b+" "+sp.Code] = true
		}
	}
	return m, wf.ValueSets, nil
}

// isBase reports whether R4 already defines sp's code on every one of its
// bases (then the R4 definition is used).
func isBase(base map[string]bool, sp *wire.Source) bool {
	for _, b := range sp.Base {
		if !base[b+" "+sp.Code] && !base["* "+sp.Code] {
			return false
		}
	}
	return true
}

// readPackage returns the files of an NPM package (.tgz) by path.
func readPackage(path string) (map[string][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if h.Typeflag != tar.TypeReg || !strings.HasSuffix(h.Name, ".json") || strings.Contains(h.Name, "/example/") {
			continue
		}
		c, err := io.ReadAll(io.LimitReader(tr, 64<<20))
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", path, h.Name, err)
		}
		files[h.Name] = c
	}
}
