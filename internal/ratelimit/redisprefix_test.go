package ratelimit

import (
	"context"
	"testing"
	"time"

	"github.com/lapis-health/lapis/internal/testutil/redistest"
)

// TestRedisKeyPrefix: two limiters on one Redis with different key
// prefixes (two environments) count the same key apart; the same prefix
// shares the count.
func TestRedisKeyPrefix(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	open := func(prefix string) *Redis {
		r, err := OpenRedis(srv.URL, RedisOptions{KeyPrefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	prod, sandbox, sandbox2 := open(""), open("sandbox:"), open("sandbox:")
	l := Limit{Rate: 1, Period: time.Hour, Burst: 1}
	for name, r := range map[string]*Redis{"production": prod, "sandbox": sandbox} {
		res, err := r.AllowN(ctx, "client:a", l, 1)
		if err != nil || !res.Allowed {
			t.Fatalf("%s first request: %+v %v", name, res, err)
		}
	}
	if res, err := sandbox2.AllowN(ctx, "client:a", l, 1); err != nil || res.Allowed {
		t.Errorf("same prefix, over the limit: %+v %v", res, err)
	}
	if keys, err := srv.Command("KEYS lapis:rl:sandbox:*"); err != nil || keys == "" {
		t.Errorf("sandbox keys: %q %v", keys, err)
	}
}
