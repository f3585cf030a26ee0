package cli

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
)

// maxGroupMembers bounds the members "lapis group create" collects.
const maxGroupMembers = 100000

// groupCmd makes cohorts for Group-level Bulk Data exports.
type groupCmd struct {
	Create groupCreateCmd `cmd:"" help:"Create a Group of patients on a FHIR server: listed ids and/or every match of a Patient search."`
}

type groupCreateCmd struct {
	connFlags
	Name    string   `name:"name" required:"" help:"Group.name." placeholder:"NAME"`
	Patient []string `name:"patient" help:"Patient id of a member (repeatable or comma-separated)." placeholder:"ID"`
	Search  []string `name:"search" help:"Patient search parameter NAME=VALUE (repeatable): every match becomes a member." placeholder:"NAME=VALUE"`
}

func (c *groupCreateCmd) Run(e *env) error {
	var ids []string
	for _, p := range c.Patient {
		for _, id := range strings.Split(p, ",") {
			if id = strings.TrimSpace(id); id != "" {
				if !refID.MatchString(id) {
					return usagef("--patient %q is not a FHIR id", id)
				}
				ids = append(ids, id)
			}
		}
	}
	q := url.Values{}
	for _, p := range c.Search {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return usagef("--search %q: search parameters are NAME=VALUE", p)
		}
		q.Add(k, v)
	}
	if len(ids) == 0 && len(q) == 0 {
		return usagef("name the members with --patient or --search")
	}
	cl, err := c.newClient(e)
	if err != nil {
		return err
	}
	if len(q) > 0 {
		q.Set("_elements", "id")
		for res, err := range cl.SearchAll(e.ctx, "Patient", q) {
			if err != nil {
				return err
			}
			if len(ids) >= maxGroupMembers {
				return usagef("the search matches more than %d patients", maxGroupMembers)
			}
			ids = append(ids, res.ID)
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	members := make([]any, 0, len(ids))
	for _, id := range ids {
		members = append(members, map[string]any{"entity": map[string]string{"reference": "Patient/" + id}})
	}
	body, err := json.Marshal(map[string]any{"resourceType": "Group", "type": "person", "actual": true, "name": c.Name, "quantity": len(ids), "member": members})
	if err != nil {
		return err
	}
	res, err := cl.Create(e.ctx, json.RawMessage(body))
	if err != nil {
		return err
	}
	return printResource(e, res)
}
