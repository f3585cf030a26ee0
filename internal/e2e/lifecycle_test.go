package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/audit"
	"github.com/lapis-health/lapis/internal/testutil/lapistest"
	"github.com/lapis-health/lapis/internal/testutil/poll"
)

// TestLifecycle: /healthz and /readyz answer; on SIGTERM the server
// stops accepting connections, a slow
// request in flight completes, the audit queue is flushed (the record of
// a write acknowledged just before SIGTERM and of the one that completed
// during the shutdown are in the chain) and the process exits 0.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	forDialects(t, testLifecycle)
}

func testLifecycle(t *testing.T, dbURL string) {
	in := start(t, dbURL)
	if r := in.Do(t, "GET", in.Origin+"/healthz", nil); r.Status != 200 {
		t.Fatalf("/healthz: %d", r.Status)
	}
	if r := in.Do(t, "GET", in.Origin+"/readyz", nil); r.Status != 200 || string(r.Body) != "ok\n" {
		t.Fatalf("/readyz: %d %q", r.Status, r.Body)
	}

	// A write acknowledged just before SIGTERM.
	before := in.do("POST", "/Patient", patient("Before")).expect(t, 201)
	beforeID := str(before.body, "id")

	// A slow write in flight: its handler runs (it asked for the body: the
	// server sent 100 Continue) when SIGTERM comes; the body follows.
	body, _ := json.Marshal(patient("During"))
	conn, err := net.Dial("tcp", in.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /fhir/Patient HTTP/1.1\r\nHost: %s\r\nX-API-Key: %s\r\nContent-Type: application/fhir+json\r\nContent-Length: %d\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
		in.Addr, in.apiKey, len(body))
	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, " 100 ") {
		t.Fatalf("no 100 Continue: %q %v", line, err)
	}
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if err := in.Terminate(); err != nil {
		t.Fatal(err)
	}
	// Stop accepting: new connections are refused.
	poll.Until(t, 30*time.Second, "listener closed after SIGTERM", func() bool {
		c, err := net.DialTimeout("tcp", in.Addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	// The slow request completes.
	if _, err := conn.Write(body); err != nil {
		t.Fatalf("finishing the in-flight request: %v", err)
	}
	st, b := readResponse(t, br)
	if st != 201 {
		t.Fatalf("in-flight write across SIGTERM: %d %s", st, b)
	}
	var during map[string]any
	_ = json.Unmarshal([]byte(b), &during)
	duringID := str(during, "id")

	select {
	case <-in.Exited():
	case <-time.After(lapistest.DefaultStopTimeout):
		t.Fatal("no exit after SIGTERM")
	}
	if err := in.ExitErr(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, in.Logs())
	}

	// The audit queue was flushed: both writes are in the chain.
	adb, err := audit.OpenDB(context.Background(), dbURL, in.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer adb.Close()
	for _, ref := range []string{"Patient/" + beforeID, "Patient/" + duringID} {
		if !chainHas(t, adb, ref) {
			t.Errorf("no audit record of %s after the shutdown", ref)
		}
	}
}

// readResponse reads one HTTP response from br.
func readResponse(t *testing.T, br *bufio.Reader) (int, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading a response: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
