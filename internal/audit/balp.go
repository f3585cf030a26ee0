package audit

import (
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/lapis-health/lapis/internal/fhir/fhirid"
	"github.com/lapis-health/lapis/internal/fhir/fhirtime"
)

// Code systems of the AuditEvents (IHE Basic Audit Log Patterns).
const (
	SystemDCM             = "http://dicom.nema.org/resources/ontology/DCM"
	SystemEventType       = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	SystemRestful         = "http://hl7.org/fhir/restful-interaction"
	SystemEntityType      = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	SystemObjectRole      = "http://terminology.hl7.org/CodeSystem/object-role"
	SystemParticipation   = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	SystemSourceType      = "http://terminology.hl7.org/CodeSystem/security-source-type"
	SystemSecurityEvent   = "https://lapis-health.github.io/fhir/CodeSystem/security-event"
	SystemClientID        = "urn:lapis:client"
	SystemSubject         = "urn:lapis:subject"
	SystemCredential      = "urn:lapis:credential"
	ProfileBALPRead       = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.Read"
	ProfileBALPQuery      = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.Query"
	ProfileBALPCreate     = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.Create"
	ProfileBALPUpdate     = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.Update"
	ProfileBALPDelete     = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.Delete"
	ProfileBALPAuthnLogin = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.SAMLaccessTokenUse.Minimal"
)

type coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

type codeable struct {
	Coding []coding `json:"coding"`
}

type identifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

type reference struct {
	Reference  string      `json:"reference,omitempty"`
	Identifier *identifier `json:"identifier,omitempty"`
	Display    string      `json:"display,omitempty"`
}

type network struct {
	Address string `json:"address"`
	Type    string `json:"type"`
}

type agent struct {
	Type      *codeable  `json:"type,omitempty"`
	Who       *reference `json:"who,omitempty"`
	Name      string     `json:"name,omitempty"`
	Requestor bool       `json:"requestor"`
	Policy    []string   `json:"policy,omitempty"`
	Network   *network   `json:"network,omitempty"`
}

type source struct {
	Site     string    `json:"site,omitempty"`
	Observer reference `json:"observer"`
	Type     []coding  `json:"type,omitempty"`
}

type detail struct {
	Type        string `json:"type"`
	ValueString string `json:"valueString"`
}

type entity struct {
	What        *reference `json:"what,omitempty"`
	Type        *coding    `json:"type,omitempty"`
	Role        *coding    `json:"role,omitempty"`
	Description string     `json:"description,omitempty"`
	Query       string     `json:"query,omitempty"`
	Detail      []detail   `json:"detail,omitempty"`
}

type meta struct {
	VersionID   string   `json:"versionId"`
	LastUpdated string   `json:"lastUpdated"`
	Profile     []string `json:"profile,omitempty"`
}

// auditEvent is the stored shape of an R4 AuditEvent. Field order is the
// JSON order, so equal events encode to equal bytes.
type auditEvent struct {
	ResourceType string   `json:"resourceType"`
	ID           string   `json:"id"`
	Meta         meta     `json:"meta"`
	Type         coding   `json:"type"`
	Subtype      []coding `json:"subtype,omitempty"`
	Action       string   `json:"action,omitempty"`
	Recorded     string   `json:"recorded"`
	Outcome      string   `json:"outcome,omitempty"`
	OutcomeDesc  string   `json:"outcomeDesc,omitempty"`
	Agent        []agent  `json:"agent"`
	Source       source   `json:"source"`
	Entity       []entity `json:"entity,omitempty"`
}

// Source describes this Lapis instance, the observer of every record.
type Source struct {
	// Site is the FHIR base URL.
	Site string
	// Instance is the chain id of this process.
	Instance string
}

// securityType returns the AuditEvent.type and extra subtype of a
// security event kind.
func securityType(k Kind) (coding, []coding) {
	sub := coding{System: SystemSecurityEvent, Code: string(k)}
	switch k {
	case KindLogin, KindLoginFailure:
		return coding{System: SystemDCM, Code: "110114", Display: "User Authentication"},
			[]coding{{System: SystemDCM, Code: "110122", Display: "Login"}, sub}
	case KindLogout:
		return coding{System: SystemDCM, Code: "110114", Display: "User Authentication"},
			[]coding{{System: SystemDCM, Code: "110123", Display: "Logout"}, sub}
	case KindTokenIssued, KindTokenRefreshed, KindTokenRevoked, KindTokenFailure, KindAuthnFailure, KindAPIKeyUsed:
		return coding{System: SystemDCM, Code: "110114", Display: "User Authentication"}, []coding{sub}
	case KindConsent, KindAPIKeyCreated, KindAPIKeyRotated, KindAPIKeyRevoked, KindAdmin:
		return coding{System: SystemDCM, Code: "110137", Display: "User Security Attributes Changed"}, []coding{sub}
	}
	return coding{System: SystemDCM, Code: "110113", Display: "Security Alert"}, []coding{sub}
}

// The parts every record of a kind shares, made once. Records only read
// them (rendering, the copy's index and map), never change them.
var (
	profileRead   = []string{ProfileBALPRead}
	profileQuery  = []string{ProfileBALPQuery}
	profileCreate = []string{ProfileBALPCreate}
	profileUpdate = []string{ProfileBALPUpdate}
	profileDelete = []string{ProfileBALPDelete}

	agentTypeUser   = &codeable{Coding: []coding{{System: SystemParticipation, Code: "IRCP", Display: "information recipient"}}}
	agentTypeClient = &codeable{Coding: []coding{{System: SystemDCM, Code: "110153", Display: "Source Role ID"}}}
	agentTypeServer = &codeable{Coding: []coding{{System: SystemDCM, Code: "110152", Display: "Destination Role ID"}}}
	sourceType      = []coding{{System: SystemSourceType, Code: "4", Display: "Application Server"}}

	entityPerson = &coding{System: SystemEntityType, Code: "1", Display: "Person"}
	entityObject = &coding{System: SystemEntityType, Code: "2", Display: "System Object"}
	rolePatient  = &coding{System: SystemObjectRole, Code: "1", Display: "Patient"}
	roleQuery    = &coding{System: SystemObjectRole, Code: "24", Display: "Query"}
	roleDomain   = &coding{System: SystemObjectRole, Code: "4", Display: "Domain Resource"}
	roleReport   = &coding{System: SystemObjectRole, Code: "3", Display: "Report"}

	// statusDescs are the outcome descriptions "HTTP nnn" of the status
	// codes 100 to 599.
	statusDescs = func() (t [600]string) {
		for i := 100; i < len(t); i++ {
			t[i] = "HTTP " + strconv.Itoa(i)
		}
		return t
	}()
)

func profileFor(action string, k Kind) []string {
	if k != KindREST {
		return nil
	}
	switch action {
	case "R":
		return profileRead
	case "E":
		return profileQuery
	case "C":
		return profileCreate
	case "U":
		return profileUpdate
	case "D":
		return profileDelete
	}
	return nil
}

// networkType is the AuditEvent.agent.network.type of an address: 2 for
// an IP address, 1 for a machine name.
func networkType(addr string) string {
	if strings.Trim(addr, "0123456789abcdefABCDEF.:[]") == "" {
		return "2"
	}
	return "1"
}

// recordID returns the id of a new AuditEvent: a time-ordered UUID
// (version 7). Consecutive records' ids are neighbours in every index
// keyed by id (the chain table's, the FHIR store's current and history
// rows), so a batch of records appends to a few pages instead of
// dirtying one random page per record in indexes that grow by every
// request. The time it carries is when the record was written, moments
// after its recorded time: the id reveals nothing the record does not.
func recordID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// Render turns e into the stored AuditEvent JSON with id and the
// recorded time at (millisecond precision, also meta.lastUpdated).
func Render(e *Event, id string, at time.Time, src Source) []byte {
	ae := newAuditEvent(e, id, at, src)
	return ae.appendJSON(make([]byte, 0, 2560))
}

// newAuditEvent is the AuditEvent of e (see Render).
func newAuditEvent(e *Event, id string, at time.Time, src Source) *auditEvent {
	at = at.UTC().Truncate(time.Millisecond)
	ts := fhirtime.FormatInstant(at)
	ae := auditEvent{ResourceType: "AuditEvent", ID: id, Meta: meta{VersionID: "1", LastUpdated: ts}, Recorded: ts,
		Agent: make([]agent, 0, 3), Entity: make([]entity, 0, len(e.Entities)+2)}
	ae.Meta.Profile = profileFor(e.Action, e.Kind)
	if e.Kind == KindREST || e.Kind == "" {
		ae.Type = coding{System: SystemEventType, Code: "rest", Display: "Restful Operation"}
		if e.Interaction != "" {
			ae.Subtype = []coding{{System: SystemRestful, Code: e.Interaction}}
		}
	} else {
		ae.Type, ae.Subtype = securityType(e.Kind)
	}
	ae.Action = e.Action
	if ae.Action == "" {
		ae.Action = "E"
	}
	ae.Outcome = string(e.Outcome)
	if ae.Outcome == "" {
		ae.Outcome = string(OutcomeSuccess)
	}
	desc := e.Description
	switch {
	case e.Status >= 100 && e.Status < len(statusDescs) && desc == "":
		desc = statusDescs[e.Status]
	case e.Status != 0:
		if desc != "" {
			desc += "; "
		}
		desc += "HTTP " + strconv.Itoa(e.Status)
	}
	if e.Occurrences > 1 {
		if desc != "" {
			desc += "; "
		}
		desc += strconv.Itoa(e.Occurrences) + " occurrences"
	}
	ae.OutcomeDesc = desc

	// The user (requestor) when there is one.
	if e.Subject != "" || e.FHIRUser != "" {
		u := agent{Requestor: true, Type: agentTypeUser}
		u.Who = &reference{}
		if validRef(e.FHIRUser) {
			u.Who.Reference = e.FHIRUser
		}
		if e.Subject != "" {
			u.Who.Identifier = &identifier{System: SystemSubject, Value: e.Subject}
		}
		if u.Who.Reference == "" && u.Who.Identifier == nil {
			u.Who = nil
		}
		ae.Agent = append(ae.Agent, u)
	}
	// The client application, with the caller's network address.
	c := agent{Requestor: len(ae.Agent) == 0, Type: agentTypeClient}
	if e.ClientID != "" {
		c.Who = &reference{Identifier: &identifier{System: SystemClientID, Value: e.ClientID}}
	} else {
		c.Name = "anonymous"
	}
	if e.CredentialID != "" {
		method := e.Method
		if method == "" {
			method = "credential"
		}
		c.Policy = []string{SystemCredential + ":" + safeToken(method) + ":" + safeToken(e.CredentialID)}
	}
	if e.Address != "" {
		c.Network = &network{Address: e.Address, Type: networkType(e.Address)}
	}
	ae.Agent = append(ae.Agent, c)
	// The server.
	ae.Agent = append(ae.Agent, agent{
		Type:      agentTypeServer,
		Who:       &reference{Display: src.Site},
		Requestor: false,
	})
	ae.Source = source{
		Site:     src.Site,
		Observer: reference{Identifier: &identifier{System: "urn:lapis:instance", Value: src.Instance}, Display: "Lapis"},
		Type:     sourceType,
	}

	if e.Patient != "" && validID(e.Patient) {
		ae.Entity = append(ae.Entity, entity{
			What: &reference{Reference: "Patient/" + e.Patient},
			Type: entityPerson,
			Role: rolePatient,
		})
	}
	for _, en := range e.Entities {
		switch {
		case en.Role == "query":
			ae.Entity = append(ae.Entity, entity{
				Type:  entityObject,
				Role:  roleQuery,
				Query: base64.StdEncoding.EncodeToString([]byte(en.Query)),
			})
		case en.Type != "" && validID(en.ID):
			ref := en.Type + "/" + en.ID
			if en.Version != "" && validID(en.Version) {
				ref += "/_history/" + en.Version
			}
			ae.Entity = append(ae.Entity, entity{
				What: &reference{Reference: ref},
				Type: entityObject,
				Role: roleDomain,
			})
		}
	}
	if e.Returned > 0 {
		ae.Entity = append(ae.Entity, entity{
			Type:   entityObject,
			Role:   roleReport,
			Detail: []detail{{Type: "resources-returned", ValueString: strconv.Itoa(e.Returned)}},
		})
	}
	return &ae
}

// validRef reports whether s is "Type/id" with a plausible type and id.
func validRef(s string) bool {
	t, id, ok := strings.Cut(s, "/")
	return ok && t != "" && t[0] >= 'A' && t[0] <= 'Z' && strings.Trim(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") == "" && validID(id)
}

// validID reports whether s is a FHIR id ([A-Za-z0-9\-\.]{1,64}).
func validID(s string) bool { return fhirid.Valid(s) }

// safeToken keeps the characters of a uri segment that cannot break it.
func safeToken(s string) string {
	if len(s) <= 128 && tokenSafe(s) {
		return s // the common case: nothing to drop
	}
	var b strings.Builder
	for i := 0; i < len(s) && i < 128; i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// tokenSafe reports whether every byte of s is one safeToken keeps.
func tokenSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}
