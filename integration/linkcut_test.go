package integration

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/internal/testkit"
	"github.com/keytrail/keytrail/services/control"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
)

// cutProxy forwards TCP connections to target until cut, which drops
// every connection and refuses new ones until restore.
type cutProxy struct {
	target string
	ln     net.Listener
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{target: target, ln: ln}
	t.Cleanup(func() { ln.Close(); p.drop() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.cut {
				p.mu.Unlock()
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) URL() string { return "nats://" + p.ln.Addr().String() }

func (p *cutProxy) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	p.cut = cut
	p.mu.Unlock()
	if cut {
		p.drop()
	}
}

// TestAGatewayCatchesUpWhenItsLinkReturns: a gateway whose NATS link is
// cut for 2 s while a key is revoked denies the key soon after the link
// returns (the figure is logged; the bound asserted is generous, the
// target is 100 ms).
func TestAGatewayCatchesUpWhenItsLinkReturns(t *testing.T) {
	node := natstest.RunServer(t)
	ctx := testCtx(t, 2*time.Minute)
	st := openStore(t, node.ConnectAs(t, natsauth.Control), store.Config{})
	svc, keyID, sec := givenOrdersKey(t, ctx, st)
	proxy := newCutProxy(t, node.Addr().String())
	gw := runGatewayInProcess(t, ctx, sec, "--nats", proxy.URL(), "--nats-nkey", node.SeedFile(t, natsauth.Gateway), "--max-staleness", "10s")
	proxy.setCut(true)
	cutAt := time.Now()
	if _, _, err := svc.RevokeKey(context.Background(), control.Meta{Actor: "test"}, "acme", keyID, nil); err != nil {
		t.Fatal(err)
	}
	probes := time.NewTicker(50 * time.Millisecond) // paces the probes of a fixed-length cut
	defer probes.Stop()
	for range probes.C {
		if time.Since(cutAt) >= 2*time.Second {
			break
		}
		if s, _ := through(gw, "/orders", sec); s == 403 {
			t.Fatal("the gateway saw the revocation through a cut link")
		}
	}
	proxy.setCut(false)
	back := time.Now()
	testkit.Eventually(t, 10*time.Second, func() error {
		if s, code := through(gw, "/orders", sec); s != 403 {
			return &codeErr{s, code}
		}
		return nil
	})
	t.Logf("revocation denied %v after the link returned", time.Since(back))
}

// TestAGatewayResumingFromAPauseNeverAnswersFromBeforeIt: a gateway stopped
// (SIGSTOP) for 2 s across a revocation, then resumed, must not serve the
// requests queued in its socket from the model it had before the pause:
// every one sent after the acknowledgement is denied. (Before the confirm
// window, most were answered 200 on resuming.)
func TestAGatewayResumingFromAPauseNeverAnswersFromBeforeIt(t *testing.T) {
	node := natstest.RunServer(t)
	ctx := testCtx(t, 2*time.Minute)
	st := openStore(t, node.ConnectAs(t, natsauth.Control), store.Config{})
	svc, keyID, sec := givenOrdersKey(t, ctx, st)
	p, gw := startKeytrail(t, "gateway ", "gateway", "--allow-upstream", "127.0.0.0/8", "--nats", node.ClientURL(),
		"--nats-nkey", node.SeedFile(t, natsauth.Gateway), "--gateway-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
	testkit.Eventually(t, 30*time.Second, func() error {
		if s, code := through(gw, "/orders", sec); s != 200 {
			return &codeErr{s, code}
		}
		return nil
	})
	// Connections a loaded gateway keeps alive, open before the pause.
	const n = 40
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	var warm sync.WaitGroup
	for range n {
		warm.Add(1)
		go func() { defer warm.Done(); send(client, gw, sec) }()
	}
	warm.Wait()
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			p.cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	defer resume()
	if _, _, err := svc.RevokeKey(context.Background(), control.Meta{Actor: "test"}, "acme", keyID, nil); err != nil {
		t.Fatal(err)
	}
	// Sent after the acknowledgement, while the gateway is stopped, on
	// connections it kept alive: the kernel queues the requests.
	statuses := make(chan int, n)
	for range n {
		go func() {
			s, _ := send(client, gw, sec)
			statuses <- s
		}()
	}
	pause := time.NewTimer(2 * time.Second) // the length of the pause, not a wait for a condition
	<-pause.C
	resume()
	got := map[int]int{}
	for range n {
		got[<-statuses]++
	}
	if got[403] != n {
		t.Fatalf("after the pause, requests sent after the revocation were answered %v; want all %d denied (403)", got, n)
	}
}

func send(client *http.Client, gw, sec string) (int, error) {
	req, _ := http.NewRequest("GET", gw+"/orders", nil)
	req.Header.Set("Authorization", "Bearer "+sec)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

type codeErr struct {
	status int
	code   string
}

func (e *codeErr) Error() string { return e.code }
