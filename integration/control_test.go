package integration

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/control"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
)

// TestNoKeyIsIssuedToADisabledUser races IssueKey against DisableUser on a
// real stream (one node and R3): whatever the interleaving, no key.issued is
// stored while its user is not active — the user scope closes the race
// between checking the user and appending the key.
func TestNoKeyIsIssuedToADisabledUser(t *testing.T) {
	for _, replicas := range []int{1, 3} {
		t.Run(fmt.Sprintf("R%d", replicas), func(t *testing.T) {
			st, svc := controlOn(t, replicas)
			ctx := testCtx(t, 2*time.Minute)
			m := func() control.Meta { return control.Meta{Actor: "root"} }
			if _, _, err := svc.CreateTenant(ctx, m(), "race", "Race"); err != nil {
				t.Fatal(err)
			}
			issued, refused := 0, 0
			rounds := 20
			if os.Getenv("KEYTRAIL_SOAK") != "" {
				rounds = 300
			}
			for i := range rounds {
				user := fmt.Sprintf("u%d", i)
				if _, _, err := svc.CreateUser(ctx, m(), "race", user, ""); err != nil {
					t.Fatal(err)
				}
				var wg sync.WaitGroup
				start := make(chan struct{})
				var issueErr, disableErr error
				wg.Add(2)
				go func() {
					defer wg.Done()
					<-start
					_, _, _, issueErr = svc.IssueKey(ctx, m(), "race", control.KeySpec{User: user})
				}()
				go func() {
					defer wg.Done()
					<-start
					_, _, disableErr = svc.DisableUser(ctx, m(), "race", user)
				}()
				close(start)
				wg.Wait()
				if disableErr != nil {
					t.Fatal(disableErr)
				}
				switch control.CodeOf(issueErr) {
				case "":
					issued++
				case control.CodeFailedPrecondition:
					refused++
				default:
					t.Fatalf("issue: %v", issueErr)
				}
			}
			t.Logf("%d keys issued before the disable, %d refused after it", issued, refused)
			checkNoKeyForInactiveUser(t, ctx, st)
		})
	}
}

// controlOn starts a single node (replicas 1) or a three-node cluster and
// a control service on its stream.
func controlOn(t *testing.T, replicas int) (store.Store, *control.Service) {
	t.Helper()
	var url string
	var auth natstest.Auth
	if replicas == 1 {
		s := natstest.RunServer(t)
		url, auth = s.ClientURL(), s.Auth
	} else {
		c := natstest.RunCluster(t, 3)
		url, auth = c.URLs(), c.Auth
	}
	st := openStore(t, natstest.Connect(t, url, auth.Identity(natsauth.Control)), store.Config{Replicas: replicas})
	svc, err := control.New(control.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	return st, svc
}

// checkNoKeyForInactiveUser folds the tenant's log and fails on a key.issued
// whose user was not active at that point.
func checkNoKeyForInactiveUser(t *testing.T, ctx context.Context, st store.Store) {
	t.Helper()
	users := map[string]projections.User{}
	for _, r := range readAll(t, st) {
		switch r.Aggregate.Kind {
		case events.KindUser:
			users[r.Aggregate.ID], _ = users[r.Aggregate.ID].Apply(r)
		case events.KindKey:
			if _, ok := r.Data.(events.KeyIssuedV1); ok && users[r.Aggregate.User].Status != projections.UserActive {
				t.Fatalf("seq %d issued a key to %s while %s", r.Seq, r.Aggregate.User, users[r.Aggregate.User].Status)
			}
		}
	}
}

// TestIfMatchLetsOneOfManyWin: concurrent suspensions pinned to one version:
// one wins, the rest get a conflict.
func TestIfMatchLetsOneOfManyWin(t *testing.T) {
	_, svc := controlOn(t, 1)
	ctx := testCtx(t, time.Minute)
	m := control.Meta{Actor: "root"}
	svc.CreateTenant(ctx, m, "acme", "A")
	svc.CreateUser(ctx, m, "acme", "bob", "")
	k, _, _, err := svc.IssueKey(ctx, m, "acme", control.KeySpec{User: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	v := k.Version
	var mu sync.Mutex
	codes := map[control.Code]int{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := svc.RevokeKey(ctx, control.Meta{Actor: "root"}, "acme", k.ID, &v)
			mu.Lock()
			codes[control.CodeOf(err)]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[""] != 1 || codes[control.CodeConflict] != 7 {
		t.Fatalf("outcomes %v: want one success and 7 conflicts", codes)
	}
}

// TestPrefixesStayUniqueUnderRaces: two tenants claim overlapping path
// prefixes at the same moment, on a real stream; exactly one succeeds.
func TestPrefixesStayUniqueUnderRaces(t *testing.T) {
	for _, replicas := range []int{1, 3} {
		t.Run(fmt.Sprintf("R%d", replicas), func(t *testing.T) {
			_, svc := controlOn(t, replicas)
			ctx := testCtx(t, time.Minute)
			for _, ten := range []string{"acme", "globex"} {
				if _, _, err := svc.CreateTenant(ctx, control.Meta{Actor: "root"}, ten, ten); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 10 {
				prefixes := map[string]string{"acme": fmt.Sprintf("/p%d", i), "globex": fmt.Sprintf("/p%d/sub", i)}
				var wg sync.WaitGroup
				errs := map[string]error{}
				var mu sync.Mutex
				for ten, prefix := range prefixes {
					wg.Add(1)
					go func() {
						defer wg.Done()
						_, _, err := svc.CreateAPI(ctx, control.Meta{Actor: "root"}, ten, control.APISpec{
							ID: fmt.Sprintf("api%d", i), PathPrefix: prefix, Upstreams: []string{"http://127.0.0.1:9"}})
						mu.Lock()
						errs[ten] = err
						mu.Unlock()
					}()
				}
				wg.Wait()
				ok := 0
				for ten, err := range errs {
					switch control.CodeOf(err) {
					case "":
						ok++
					case control.CodeConflict:
					default:
						t.Fatalf("%s: %v", ten, err)
					}
				}
				if ok != 1 {
					t.Fatalf("round %d: %d tenants got overlapping prefixes (%v)", i, ok, errs)
				}
			}
		})
	}
}
