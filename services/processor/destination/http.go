package destination

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// Headers of the HTTP destination protocol (README documents the body).
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderSignature is "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">":
	// the timestamp lets receivers refuse replays of old requests.
	HeaderSignature = "Vomosync-Signature"
)

// HTTP posts batches of ops as JSON to a customer's endpoint.
//
// Answers: 2xx applied (a body {"results":[{"idempotency_key":..,"status":
// "applied"|"stale"|"rejected","error":..}]} may give per-op answers, and
// {"status":"stale"} says the whole batch was stale); 409 stale; 408, 425,
// 429 and 5xx retried; any other 4xx rejects: a batch of one is
// dead-lettered with the response, a larger batch is split to find the
// culprit.
type HTTP struct {
	url    string
	key    []byte
	client *http.Client
	now    func() time.Time
}

// NewHTTP validates rawURL (see ValidateURL) and returns the destination.
// key signs every request; an empty key sends unsigned requests.
func NewHTTP(rawURL string, key []byte, allowPrivate bool, timeout time.Duration) (*HTTP, error) {
	u, err := ValidateURL(rawURL, allowPrivate)
	if err != nil {
		return nil, err
	}
	return &HTTP{url: u.String(), key: key, client: NewClient(timeout, allowPrivate), now: time.Now}, nil
}

type wireOp struct {
	Op              string          `json:"op"`
	ExternalID      string          `json:"external_id"`
	SourceUpdatedAt time.Time       `json:"source_updated_at"`
	IdempotencyKey  string          `json:"idempotency_key"`
	Record          json.RawMessage `json:"record,omitempty"`
}

type wireBatch struct {
	CustomerID string   `json:"customer_id"`
	Resource   string   `json:"resource"`
	Operations []wireOp `json:"operations"`
}

type wireAnswer struct {
	Status  string `json:"status"`
	Results []struct {
		IdempotencyKey string `json:"idempotency_key"`
		ExternalID     string `json:"external_id"`
		Status         string `json:"status"`
		Error          string `json:"error"`
	} `json:"results"`
}

// Apply implements Destination: one request per (customer, resource).
func (h *HTTP) Apply(ctx context.Context, _ pgx.Tx, ops []Op) ([]error, error) {
	res := make([]error, len(ops))
	for start := 0; start < len(ops); {
		end := start + 1
		for end < len(ops) && ops[end].CustomerID == ops[start].CustomerID && ops[end].Resource == ops[start].Resource {
			end++
		}
		h.applyGroup(ctx, ops[start:end], res[start:end])
		start = end
	}
	return res, nil
}

// applyGroup fills res for one (customer, resource) group, splitting a
// rejected batch until the rejected records are alone.
func (h *HTTP) applyGroup(ctx context.Context, ops []Op, res []error) {
	perOp, err := h.send(ctx, ops)
	switch {
	case err == nil:
		copy(res, perOp)
	case Permanent(err) && len(ops) > 1:
		mid := len(ops) / 2
		h.applyGroup(ctx, ops[:mid], res[:mid])
		h.applyGroup(ctx, ops[mid:], res[mid:])
	default:
		for i := range res {
			res[i] = err
		}
	}
}

// BatchKey is the Idempotency-Key of a request: the same ops give the same key.
func BatchKey(ops []Op) string {
	s := sha256.New()
	for _, op := range ops {
		_, _ = io.WriteString(s, op.IdempotencyKey())
		_, _ = s.Write([]byte{'\n'})
	}
	return hex.EncodeToString(s.Sum(nil)[:16])
}

// Sign returns the signature header value of body at time t under key.
func Sign(key, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, key)
	_, _ = m.Write([]byte(ts + "."))
	_, _ = m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

func (h *HTTP) send(ctx context.Context, ops []Op) ([]error, error) {
	b := wireBatch{CustomerID: ops[0].CustomerID, Resource: ops[0].Resource, Operations: make([]wireOp, len(ops))}
	for i, op := range ops {
		w := wireOp{Op: "upsert", ExternalID: op.ExternalID, SourceUpdatedAt: op.SourceUpdatedAt.UTC(),
			IdempotencyKey: op.IdempotencyKey(), Record: op.Record}
		if op.Delete {
			w.Op, w.Record = "delete", nil
		}
		b.Operations[i] = w
	}
	body, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("%w: encode batch: %v", ErrRejected, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRejected, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "vomosync-processor")
	req.Header.Set(HeaderIdempotencyKey, BatchKey(ops))
	if len(h.key) > 0 {
		req.Header.Set(HeaderSignature, Sign(h.key, body, h.now()))
	}
	resp, err := h.client.Do(req)
	if err != nil {
		if dialRefused(err) {
			return nil, fmt.Errorf("%w: %v", ErrRejected, err)
		}
		return nil, fmt.Errorf("%w: POST %s: %v", ErrUnavailable, h.url, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return perOpAnswers(ops, answer), nil
	case code == http.StatusConflict:
		return fill(len(ops), ErrStale), nil
	case code == http.StatusRequestTimeout, code == http.StatusTooEarly, code == http.StatusTooManyRequests, code >= 500:
		return nil, fmt.Errorf("%w: HTTP %d: %s", ErrUnavailable, code, snippet(answer))
	default:
		return nil, fmt.Errorf("%w: HTTP %d: %s", ErrRejected, code, snippet(answer))
	}
}

func perOpAnswers(ops []Op, body []byte) []error {
	res := make([]error, len(ops))
	var a wireAnswer
	if len(bytes.TrimSpace(body)) == 0 || json.Unmarshal(body, &a) != nil {
		return res
	}
	if a.Status == "stale" {
		return fill(len(ops), ErrStale)
	}
	byKey := make(map[string]int, len(ops))
	for i, op := range ops {
		byKey[op.IdempotencyKey()] = i
		byKey["ext:"+op.ExternalID] = i
	}
	for _, r := range a.Results {
		i, ok := byKey[r.IdempotencyKey]
		if !ok {
			i, ok = byKey["ext:"+r.ExternalID]
		}
		if !ok {
			continue
		}
		switch r.Status {
		case "stale":
			res[i] = ErrStale
		case "rejected":
			res[i] = fmt.Errorf("%w: %s", ErrRejected, r.Error)
		}
	}
	return res
}

func fill(n int, err error) []error {
	out := make([]error, n)
	for i := range out {
		out[i] = err
	}
	return out
}

func snippet(b []byte) string {
	const max = 512
	if len(b) > max {
		b = b[:max]
	}
	return string(bytes.ToValidUTF8(bytes.TrimSpace(b), []byte("?")))
}
