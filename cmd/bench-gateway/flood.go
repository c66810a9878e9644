package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keytrail/keytrail/events/secret"
)

// flood measures item 3 of the data plane's brief: legitimate traffic
// (wrk, a valid key, from 127.0.0.1) alone and while one other address
// (127.0.0.2) floods the same gateway with random well-formed keys on 16
// connections, passes interleaved; for the gateway as it runs by default
// (failure budget and tarpit) and for one without a budget.
func (e *env) flood(gwURL string, d time.Duration, passes int) error {
	_, bareURL, err := e.gateway("gateway-nobudget", "--auth-failures-per-second", "0")
	if err != nil {
		return err
	}
	targets := []struct{ name, url string }{{"gateway (budget 10/s, burst 100, tarpit 1 s)", gwURL}, {"gateway without a budget", bareURL}}
	type result struct{ alone, flooded, floodRate []float64 }
	results := make([]result, len(targets))
	for range passes {
		for i, t := range targets {
			legit := target{name: t.name, url: t.url + "/bench/1", headers: []string{"Authorization: Bearer " + e.secret}}
			rps, _, err := wrk(e.ctx, legit, 8, d)
			if err != nil {
				return err
			}
			results[i].alone = append(results[i].alone, rps)
			ctx, stop := context.WithCancel(e.ctx)
			var answered atomic.Int64
			var wg sync.WaitGroup
			start := time.Now()
			for range 16 {
				wg.Add(1)
				go func() { defer wg.Done(); floodOne(ctx, t.url, d+5*time.Second, &answered) }()
			}
			rps, _, err = wrk(e.ctx, legit, 8, d)
			stop()
			wg.Wait()
			if err != nil {
				return err
			}
			results[i].flooded = append(results[i].flooded, rps)
			results[i].floodRate = append(results[i].floodRate, float64(answered.Load())/time.Since(start).Seconds())
		}
	}
	fmt.Printf("flood: wrk -c8 with a valid key from 127.0.0.1, alone and while 127.0.0.2 sends random well-formed keys on 16 connections\n\n")
	fmt.Println("target | legit req/s alone | legit req/s flooded | ratio | flood answered/s")
	fmt.Println("---|---|---|---|---")
	for i, t := range targets {
		alone, flooded := median(results[i].alone), median(results[i].flooded)
		fmt.Printf("%s | %.0f | %.0f | %.2f | %.0f\n", t.name, alone, flooded, flooded/alone, median(results[i].floodRate))
	}
	fmt.Println()
	return nil
}

// floodOne sends requests with random well-formed keys from 127.0.0.2 on
// one keep-alive connection (a new one when the gateway closes it) until
// ctx ends or limit passes, counting the answers.
func floodOne(ctx context.Context, base string, limit time.Duration, answered *atomic.Int64) {
	addr := strings.TrimPrefix(base, "http://")
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: time.Second}
	deadline := time.Now().Add(limit)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		c, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			return
		}
		stop := context.AfterFunc(ctx, func() { c.Close() })
		c.SetDeadline(deadline)
		br := bufio.NewReader(c)
		for ctx.Err() == nil {
			s, _ := secret.Generate(secret.DefaultPrefix, rand.Reader)
			if _, err := fmt.Fprintf(c, "GET /bench/1 HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer %s\r\n\r\n", s.Reveal()); err != nil {
				break
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				break
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			answered.Add(1)
			if resp.Close {
				break
			}
		}
		stop()
		c.Close()
	}
}
