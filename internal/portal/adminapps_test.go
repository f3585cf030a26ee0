package portal

import (
	"fmt"
	"net/url"
	"testing"

	api "github.com/lapis-health/lapis/client/admin"
)

// TestPageApps: the operators' list of all apps is cut into pages of
// adminAppsPerPage, filtered by name, id or owner, with links to the
// neighbouring pages and out-of-range pages clamped.
func TestPageApps(t *testing.T) {
	var apps []App
	for i := range 120 {
		apps = append(apps, App{OAuthClient: api.OAuthClient{ID: fmt.Sprintf("id-%03d", i), Name: fmt.Sprintf("App %d", i), Owner: fmt.Sprintf("org:%d", i%3)}})
	}
	pg := pageApps(apps, url.Values{})
	if pg.Total != 120 || pg.Pages != 3 || pg.Page != 1 || len(pg.Apps) != adminAppsPerPage || pg.Prev != "" || pg.Next != "page=2" {
		t.Errorf("first page %+v", pg)
	}
	pg = pageApps(apps, url.Values{"page": {"3"}})
	if len(pg.Apps) != 20 || pg.Apps[0].ID != "id-100" || pg.Next != "" || pg.Prev != "page=2" {
		t.Errorf("last page: %d apps from %s, prev %q next %q", len(pg.Apps), pg.Apps[0].ID, pg.Prev, pg.Next)
	}
	for _, bad := range []string{"0", "-4", "99", "x"} {
		if pg := pageApps(apps, url.Values{"page": {bad}}); pg.Page < 1 || pg.Page > 3 {
			t.Errorf("page %q gave page %d", bad, pg.Page)
		}
	}
	pg = pageApps(apps, url.Values{"q": {" ORG:1 "}})
	if pg.Total != 40 || pg.Pages != 1 || pg.Q != "org:1" {
		t.Errorf("filtered %+v", pg)
	}
	if pg := pageApps(apps, url.Values{"q": {"App 11"}, "page": {"1"}}); pg.Total != 11 { // App 11, App 110..119
		t.Errorf("name filter: %d", pg.Total)
	}
	if pg := pageApps(nil, url.Values{}); pg.Pages != 1 || pg.Page != 1 || len(pg.Apps) != 0 {
		t.Errorf("no apps %+v", pg)
	}
}
