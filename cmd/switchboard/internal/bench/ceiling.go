package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-hq/switchboard/consumer"
	"github.com/switchboard-hq/switchboard/internal/cputime"
	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/signer"
)

// ceiling posts n signed bodies straight to the receiver with the
// deliverer's own HTTP client, at the deliverer's concurrency.
func (c Config) ceiling(ctx context.Context, recv *receiver, secret string, n int) (rate float64, cpu time.Duration, err error) {
	s, err := signer.New(secret)
	if err != nil {
		return 0, 0, err
	}
	client := consumer.NewHTTPClient(c.Workers, netguard.New(true)) // the receiver is on loopback
	body := c.sampleBody()
	url := recv.URL + "/ceiling"
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	start, cpuStart := time.Now(), cpuNow()
	for range c.Workers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				s.SetHeaders(req.Header, "bench_ceiling", time.Now(), body)
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body) //nolint:errcheck
				resp.Body.Close()
				if resp.StatusCode >= 300 {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), perOp(cpuNow()-cpuStart, int64(n))
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	if f := failed.Load(); f > 0 {
		return 0, 0, fmt.Errorf("ceiling run: %d of %d requests failed", f, n)
	}
	return float64(n) / elapsed.Seconds(), cpu, nil
}

// cpuNow is the process's CPU time, or 0 where it cannot be read.
func cpuNow() time.Duration {
	d, _ := cputime.Process()
	return d
}

// perOp divides cpu among n operations; 0 when there is nothing to divide.
func perOp(cpu time.Duration, n int64) time.Duration {
	if cpu <= 0 || n <= 0 {
		return 0
	}
	return cpu / time.Duration(n)
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
