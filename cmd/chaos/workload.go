package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// The workload's clients leave from their own loopback address, so that a
// partition can cut a control node from them.
const clientAddr = "127.0.4.1"

const (
	tenant = "acme"
	users  = 8
)

// op is one write as its client saw it.
type op struct {
	Kind    string    `json:"kind"` // issue, update, suspend, resume, revoke, rotate, disable-user, enable-user
	Key     string    `json:"key,omitempty"`
	User    string    `json:"user"`
	Control int       `json:"control"`
	IdemKey string    `json:"idempotency_key"`
	Sent    time.Time `json:"sent"`
	Done    time.Time `json:"done"`
	Status  int       `json:"status"` // 0: no answer (timeout, connection)
	Seq     uint64    `json:"seq,omitempty"`
	NewKey  string    `json:"new_key,omitempty"` // issue, rotate
}

func (o *op) acked() bool { return o.Status >= 200 && o.Status < 300 && o.Seq > 0 }

// answer is one request through a gateway as its client saw it.
type answer struct {
	Gateway int
	Key     string
	Sent    time.Time
	Done    time.Time
	Status  int // 0: no answer
	Code    string
}

type keyInfo struct {
	id, user, secret string
}

type workload struct {
	r      *run
	client *http.Client
	mu     sync.Mutex
	ops    []*op
	keys   []keyInfo
	ans    []answer
}

func newWorkload(r *run) *workload {
	tr := &http.Transport{DialContext: dialFrom(clientAddr).DialContext, MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second}
	return &workload{r: r, client: &http.Client{Transport: tr, Timeout: 3 * time.Second}}
}

// call sends an admin request to control node c.
func (w *workload) call(ctx context.Context, c int, method, path, idem string, body any) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+controlAddr(c)+":"+adminPort+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+w.r.rootKey)
	req.Header.Set("Content-Type", "application/json")
	if idem != "" {
		req.Header.Set("Idempotency-Key", idem)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, resp.Header, b, nil
}

// setup makes the tenant, its users and the API, retrying until done.
func (w *workload) setup(ctx context.Context, upstream string) error {
	steps := []struct {
		path string
		body any
	}{{"/v1/tenants", map[string]any{"id": tenant, "name": "Acme"}},
		{"/v1/tenants/" + tenant + "/apis", map[string]any{"id": "orders", "path_prefix": "/orders", "upstreams": []string{upstream}}}}
	for u := range users {
		steps = append(steps, struct {
			path string
			body any
		}{"/v1/tenants/" + tenant + "/users", map[string]any{"id": fmt.Sprintf("u%d", u)}})
	}
	for i, s := range steps {
		idem := fmt.Sprintf("setup-%d", i)
		if err := poll(ctx, time.Minute, func() error {
			st, _, b, err := w.call(ctx, 0, "POST", s.path, idem, s.body)
			if err != nil || (st != 201 && st != 200) {
				return fmt.Errorf("%s: %d %v %s", s.path, st, err, b)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// writer issues, suspends, resumes, revokes and rotates keys and disables
// and enables users through either control node until ctx ends.
func (w *workload) writer(ctx context.Context, id int, rng *rand.Rand) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ctx.Err() == nil; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		o := &op{Control: rng.IntN(2), IdemKey: fmt.Sprintf("w%d-%d", id, n)}
		w.mu.Lock()
		var k keyInfo
		if len(w.keys) > 0 {
			k = w.keys[rng.IntN(len(w.keys))]
		}
		w.mu.Unlock()
		var method, path string
		var body any
		switch x := rng.IntN(100); {
		case x < 30 || k.id == "":
			o.Kind, o.User = "issue", fmt.Sprintf("u%d", rng.IntN(users))
			method, path, body = "POST", "/v1/tenants/"+tenant+"/keys", map[string]any{"user": o.User}
		case x < 45:
			o.Kind, o.Key, o.User = "suspend", k.id, k.user
		case x < 65:
			o.Kind, o.Key, o.User = "resume", k.id, k.user
		case x < 75:
			o.Kind, o.Key, o.User = "revoke", k.id, k.user
		case x < 80:
			o.Kind, o.Key, o.User = "rotate", k.id, k.user
			body = map[string]any{"grace": "1h"}
		case x < 84:
			o.Kind, o.Key, o.User = "update", k.id, k.user
			method, path = "PATCH", "/v1/tenants/"+tenant+"/keys/"+o.Key
			body = map[string]any{"name": fmt.Sprintf("n%d", n)}
		case x < 90:
			o.Kind, o.User = "disable-user", k.user
			method, path = "POST", "/v1/tenants/"+tenant+"/users/"+o.User+"/disable"
		default:
			o.Kind, o.User = "enable-user", k.user
			method, path = "POST", "/v1/tenants/"+tenant+"/users/"+o.User+"/enable"
		}
		if path == "" {
			method, path = "POST", "/v1/tenants/"+tenant+"/keys/"+o.Key+"/"+o.Kind
		}
		if body == nil {
			body = map[string]any{"reason": "chaos"}
		}
		o.Sent = time.Now()
		st, h, b, err := w.call(ctx, o.Control, method, path, o.IdemKey, body)
		o.Done = time.Now()
		if err == nil {
			o.Status = st
			o.Seq, _ = strconv.ParseUint(h.Get("Keytrail-Seq"), 10, 64)
		}
		if o.acked() && (o.Kind == "issue" || o.Kind == "rotate") {
			var out struct { // the key issued (rotate: the new one) and its secret
				Key struct {
					ID string `json:"id"`
				} `json:"key"`
				Secret string `json:"secret"`
			}
			if json.Unmarshal(b, &out) == nil {
				nk := keyInfo{id: out.Key.ID, user: o.User, secret: out.Secret}
				if nk.id != "" && nk.secret != "" {
					o.NewKey = nk.id
					w.mu.Lock()
					w.keys = append(w.keys, nk)
					w.mu.Unlock()
				}
			}
		}
		w.mu.Lock()
		w.ops = append(w.ops, o)
		w.mu.Unlock()
	}
}

// traffic sends requests with known keys through gateway g until ctx
// ends, recording every answer.
func (w *workload) traffic(ctx context.Context, g int, rng *rand.Rand) {
	tr := &http.Transport{DialContext: dialFrom(clientAddr).DialContext, MaxIdleConnsPerHost: 4}
	c := &http.Client{Transport: tr, Timeout: 3 * time.Second}
	defer tr.CloseIdleConnections()
	tick := time.NewTicker(4 * time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		w.mu.Lock()
		if len(w.keys) == 0 {
			w.mu.Unlock()
			continue
		}
		k := w.keys[rng.IntN(len(w.keys))]
		w.mu.Unlock()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+gatewayAddr(g)+":"+gatewayPort+"/orders/1", nil)
		req.Header.Set("Authorization", "Bearer "+k.secret)
		a := answer{Gateway: g, Key: k.id, Sent: time.Now()}
		resp, err := c.Do(req)
		a.Done = time.Now()
		if err == nil {
			a.Status, a.Code = resp.StatusCode, "VALID"
			if a.Status != 200 { // a problem: its code in the body
				var p struct{ Code string }
				json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&p)
				a.Code = p.Code
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		w.ans = append(w.ans, a)
		w.mu.Unlock()
	}
}
