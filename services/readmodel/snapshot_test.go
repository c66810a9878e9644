package readmodel

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/control"
)

// randomHistory drives the control plane with random commands (many of
// them refused, as real traffic is) and drops some garbage on event
// subjects, returning the log's length.
func randomHistory(t *testing.T, ctx context.Context, st *store.Memory, svc *control.Service, rng *rand.Rand, n int) {
	m := func() control.Meta { return control.Meta{Actor: "prop"} }
	tenants := []string{"acme", "globex"}
	users := []string{"u1", "u2", "u3"}
	var keys [][2]string // tenant, key id
	for _, ten := range tenants {
		svc.CreateTenant(ctx, m(), ten, ten)
	}
	for i := range n {
		ten := tenants[rng.IntN(len(tenants))]
		user := users[rng.IntN(len(users))]
		switch rng.IntN(12) {
		case 0:
			svc.CreateUser(ctx, m(), ten, user, "")
		case 1:
			svc.DisableUser(ctx, m(), ten, user)
		case 2:
			svc.EnableUser(ctx, m(), ten, user)
		case 3:
			if rng.IntN(4) == 0 {
				svc.DeleteUser(ctx, m(), ten, user)
			}
		case 4, 5, 6:
			k, _, _, err := svc.IssueKey(ctx, m(), ten, control.KeySpec{User: user, Scopes: []string{"a"}, TTL: time.Duration(1+rng.IntN(48)) * time.Hour})
			if err == nil {
				keys = append(keys, [2]string{ten, k.ID})
			}
		case 7, 8:
			if len(keys) > 0 {
				k := keys[rng.IntN(len(keys))]
				switch rng.IntN(4) {
				case 0:
					svc.SuspendKey(ctx, m(), k[0], k[1], nil)
				case 1:
					svc.ResumeKey(ctx, m(), k[0], k[1], nil)
				case 2:
					svc.RevokeKey(ctx, m(), k[0], k[1], nil)
				case 3:
					if rot, _, err := svc.RotateKey(ctx, m(), k[0], k[1], time.Hour, nil); err == nil {
						keys = append(keys, [2]string{k[0], rot.New.ID})
					}
				}
			}
		case 9:
			svc.CreateAPI(ctx, m(), ten, control.APISpec{ID: fmt.Sprintf("api%d", i), PathPrefix: fmt.Sprintf("/%s/p%d", ten, i),
				Upstreams: []string{"http://127.0.0.1:9"}})
		case 10:
			if rng.IntN(3) == 0 {
				svc.SuspendTenant(ctx, m(), ten)
			} else {
				svc.ResumeTenant(ctx, m(), ten)
			}
		case 11:
			st.PublishRaw(fmt.Sprintf("keytrail.evt.%s.u.%s.u", ten, user), []byte("garbage"))
		}
	}
}

// TestIncrementalEqualsReplayEqualsSnapshotPlusTail: the catalog a model
// builds while the log grows, a full replay of the log, and a snapshot taken
// anywhere plus the tail after it, all have the same digest.
func TestIncrementalEqualsReplayEqualsSnapshotPlusTail(t *testing.T) {
	for seed := range uint64(5) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 42))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			st := store.NewMemory()
			clock := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
			svc, err := control.New(control.Config{Store: st, Now: func() time.Time { return clock }})
			if err != nil {
				t.Fatal(err)
			}
			model := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
			go model.Run(ctx, st, nil)
			randomHistory(t, ctx, st, svc, rng, 300)
			last, _ := st.LastSeq(ctx, "")
			if err := model.WaitFor(ctx, last, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			var incremental [32]byte
			model.Read(func(c *projections.Catalog) { incremental = c.Digest() })

			log := readLog(t, ctx, st, last)
			full := fold(projections.NewCatalog(), log)
			if full.Digest() != incremental {
				t.Fatal("incremental fold and full replay differ")
			}
			if len(log) < 100 {
				t.Fatalf("only %d messages", len(log))
			}
			cut := 1 + rng.IntN(len(log)-1)
			var snap bytes.Buffer
			partial := fold(projections.NewCatalog(), log[:cut])
			if partial.Digest() == incremental {
				t.Fatal("the digest does not see the tail's events")
			}
			if err := partial.WriteSnapshot(&snap); err != nil {
				t.Fatal(err)
			}
			restored, err := projections.ReadSnapshot(&snap)
			if err != nil {
				t.Fatal(err)
			}
			if fold(restored, log[cut:]).Digest() != incremental {
				t.Fatalf("snapshot at %d plus tail differs from the full replay", cut)
			}
			if full.Skipped == 0 {
				t.Fatal("the history had no garbage to skip")
			}
			t.Logf("%d messages, snapshot at %d of them, %d bytes", len(log), cut, snap.Cap())
		})
	}
}

// delivery is one message of the log: an event or what did not decode.
type delivery = store.Delivery

func readLog(t *testing.T, ctx context.Context, st store.Store, last uint64) []delivery {
	sub, err := st.Subscribe(ctx, store.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var out []delivery
	for len(out) == 0 || out[len(out)-1].Seq < last {
		d, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

func fold(c *projections.Catalog, log []delivery) *projections.Catalog {
	for _, d := range log {
		c.Take(d.Seq, d.Raw, d.Event, d.Err)
	}
	return c
}
