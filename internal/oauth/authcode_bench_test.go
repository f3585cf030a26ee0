package oauth_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAuthorizationCodeExchange measures code exchanges per second
// over HTTP (public client, PKCE, access token + refresh token + RS256
// id_token, token family recorded). Codes are issued before the timer.
func BenchmarkAuthorizationCodeExchange(b *testing.B) {
	codeDialects(b, func(b *testing.B, e *codeEnv) {
		pub := acPublicClient(e)
		bodies := make([]string, b.N)
		for i := range bodies {
			f := acExchangeForm(e.code(acGrant(pub)))
			f.Set("client_id", pub)
			bodies[i] = f.Encode()
		}
		benchPost(b, e.token, func(i int64) string { return bodies[i] }, "")
	})
}

// BenchmarkRefresh measures refresh_token grants per second over HTTP:
// 8 concurrent clients each rotate their own refresh token chain.
func BenchmarkRefresh(b *testing.B) {
	codeDialects(b, func(b *testing.B, e *codeEnv) {
		pub := acPublicClient(e)
		tr := &http.Transport{MaxIdleConnsPerHost: 64}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr}
		post := func(form url.Values) (map[string]any, int) {
			resp, err := client.Post(e.token, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
			if err != nil {
				b.Error(err)
				return nil, 0
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var m map[string]any
			_ = json.Unmarshal(raw, &m)
			return m, resp.StatusCode
		}
		// One refresh-token chain per worker, obtained before the timer.
		const workers = 8
		chains := make(chan string, 64*workers)
		for range 64 * workers {
			f := acExchangeForm(e.code(acGrant(pub)))
			f.Set("client_id", pub)
			m, st := post(f)
			if st != 200 {
				b.Fatalf("exchange: %d", st)
			}
			chains <- m["refresh_token"].(string)
		}
		b.SetParallelism(workers)
		b.ResetTimer()
		start := time.Now()
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			rt := <-chains
			for pb.Next() {
				m, st := post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {pub}})
				if st != 200 {
					b.Errorf("refresh: %d", st)
					return
				}
				rt = m["refresh_token"].(string)
				n.Add(1)
			}
		})
		b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "req/s")
	})
}
