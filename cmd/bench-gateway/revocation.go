package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/keytrail/keytrail/client"
)

// revocation measures items 4 and 5 of the data plane's brief on three
// gateway processes with a 250 ms staleness bound: from the admin API's
// acknowledgement of a revocation to every gateway denying the key, idle
// and while each gateway carries wrk load — "applied" through a request
// carrying Keytrail-Min-Seq (answered once the gateway has applied the
// revocation), "probe" by requests sent in a loop until one is denied —
// and how many of the loads' requests were answered STALE (none should
// be: the bound is confirmed often enough).
func (e *env) revocation(d time.Duration) error {
	var urls []string
	for i := range 3 {
		_, u, err := e.gateway(fmt.Sprintf("gateway-r%d", i+1), "--max-staleness", "250ms")
		if err != nil {
			return err
		}
		urls = append(urls, u)
	}
	c := client.New(e.admin, e.root, nil)
	const samples = 40
	fmt.Printf("revocation: acknowledgement → denied on all of 3 gateways (--max-staleness 250ms), %d samples each\n\n", samples)
	fmt.Println("phase | Min-Seq request answered p50 | p99 | probe denied p50 | p99 | load requests | STALE or other non-2xx")
	fmt.Println("---|---|---|---|---|---|---")
	for _, loaded := range []bool{false, true} {
		var load []wrkResult
		var loadErr error
		var wg sync.WaitGroup
		phase := "idle"
		if loaded {
			phase = "3 × wrk -c8"
			load = make([]wrkResult, len(urls))
			loadFor := max(d, 10*time.Second)
			for i, u := range urls {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, err := wrkRun(e.ctx, target{url: u + "/bench/1", headers: []string{"Authorization: Bearer " + e.secret}}, 8, loadFor)
					load[i] = r
					if err != nil {
						loadErr = err
					}
				}()
			}
			// Let the loads start before the first sample.
			if err := waitOK(urls[0]+"/bench/1", "Authorization", "Bearer "+e.secret); err != nil {
				return err
			}
		}
		var applied, probed []time.Duration
		for range samples {
			a, p, err := e.revokeOnce(c, urls)
			if err != nil {
				return err
			}
			applied, probed = append(applied, a), append(probed, p)
		}
		wg.Wait()
		if loadErr != nil {
			return loadErr
		}
		total, non2xx := 0, 0
		for _, r := range load {
			total, non2xx = total+r.requests, non2xx+r.non2xx
		}
		loadCol, staleCol := "–", "–"
		if loaded {
			loadCol, staleCol = strconv.Itoa(total), strconv.Itoa(non2xx)
		}
		fmt.Printf("%s | %s | %s | %s | %s | %s | %s\n", phase, ms(quantile(applied, 0.5)), ms(quantile(applied, 0.99)),
			ms(quantile(probed, 0.5)), ms(quantile(probed, 0.99)), loadCol, staleCol)
	}
	fmt.Println()
	return nil
}

// revokeOnce issues a key, waits until every gateway serves it, revokes it
// and returns the time from the acknowledgement to the last gateway
// answering a Min-Seq request (applied) and to the last gateway denying a
// request sent in a loop (probe).
func (e *env) revokeOnce(c *client.Client, urls []string) (applied, probed time.Duration, err error) {
	k, err := c.IssueKey(e.ctx, "bench", client.KeySpec{User: "load", Name: "probe"}, nil)
	if err != nil {
		return 0, 0, err
	}
	for _, u := range urls {
		if st, err := get(u, k.Secret, k.Seq); err != nil || st != 200 {
			return 0, 0, fmt.Errorf("a new key: %d %v", st, err)
		}
	}
	_, res, err := c.RevokeKey(e.ctx, "bench", k.Key.ID, "bench", nil)
	if err != nil {
		return 0, 0, err
	}
	ack := time.Now()
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failed error
	for _, u := range urls {
		wg.Add(2)
		go func() { // applied: one request that waits for the revocation's sequence
			defer wg.Done()
			st, err := get(u, k.Secret, res.Seq)
			mu.Lock()
			defer mu.Unlock()
			if err != nil || st != http.StatusForbidden {
				failed = fmt.Errorf("with Min-Seq: %d %v", st, err)
			}
			applied = max(applied, time.Since(ack))
		}()
		go func() { // probe: requests in a loop until one is denied
			defer wg.Done()
			deadline := ack.Add(5 * time.Second)
			for time.Now().Before(deadline) {
				if st, err := get(u, k.Secret, 0); err == nil && st == http.StatusForbidden {
					mu.Lock()
					probed = max(probed, time.Since(ack))
					mu.Unlock()
					return
				}
			}
			mu.Lock()
			failed = fmt.Errorf("%s never denied the revoked key", u)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return applied, probed, failed
}

var probeClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 10 * time.Second}

// get sends GET /bench/1 with key (and Keytrail-Min-Seq when minSeq > 0).
func get(base, key string, minSeq uint64) (int, error) {
	req, _ := http.NewRequestWithContext(context.Background(), "GET", base+"/bench/1", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	if minSeq > 0 {
		req.Header.Set("Keytrail-Min-Seq", strconv.FormatUint(minSeq, 10))
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func quantile(v []time.Duration, q float64) time.Duration {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
