// Package auth owns who may see the console: operators (bcrypt-hashed
// passwords), customer-scoped console tokens (only their SHA-256 is kept),
// sessions of both kinds (the cookie holds a random token, the database its
// HMAC under the session key) and the login rate limit. syncctl creates
// operators and tokens with it; the console checks them.
package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/crypto/bcrypt"
)

// Sentinel errors.
var (
	// ErrBadCredentials: unknown user, wrong password, disabled operator,
	// or an unknown, revoked or expired token. One error for all, so the
	// answer does not tell which.
	ErrBadCredentials = errors.New("invalid credentials")
	// ErrRateLimited: too many failed logins for this user or address.
	ErrRateLimited = errors.New("too many failed logins; try again later")
	// ErrNoSession: the cookie names no live session.
	ErrNoSession = errors.New("no session")
	// ErrExists: an operator of that name exists.
	ErrExists = errors.New("operator already exists")
	// ErrWeakPassword: shorter than MinPassword.
	ErrWeakPassword = errors.New("password too short")
)

// MinPassword is the shortest password accepted for an operator.
const MinPassword = 12

// DBTX is what the store needs of a pool or a transaction.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

var usernameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._@-]{0,62}$`)

// AddOperator creates an operator with a bcrypt hash of password.
func AddOperator(ctx context.Context, db DBTX, username, password, createdBy string) error {
	if !usernameRE.MatchString(username) {
		return fmt.Errorf("operator name %q: use 1-63 characters of a-z, 0-9, '.', '_', '@', '-'", username)
	}
	if len(password) < MinPassword {
		return fmt.Errorf("%w: at least %d characters", ErrWeakPassword, MinPassword)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	_, err = db.Exec(ctx, `INSERT INTO vomosync.operators (username, password_hash, created_by) VALUES ($1, $2, $3)`,
		username, string(hash), createdBy)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return fmt.Errorf("%w: %s", ErrExists, username)
	}
	if err != nil {
		return fmt.Errorf("add operator %s: %w", username, err)
	}
	return nil
}

// SetPassword replaces an operator's password and ends its sessions.
func SetPassword(ctx context.Context, db DBTX, username, password string) error {
	if len(password) < MinPassword {
		return fmt.Errorf("%w: at least %d characters", ErrWeakPassword, MinPassword)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	var id int64
	err = db.QueryRow(ctx, `UPDATE vomosync.operators SET password_hash = $2 WHERE username = $1 RETURNING id`, username, string(hash)).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("operator %s: %w", username, ErrBadCredentials)
	}
	if err != nil {
		return fmt.Errorf("set password of %s: %w", username, err)
	}
	_, err = db.Exec(ctx, `DELETE FROM vomosync.console_sessions WHERE operator_id = $1`, id)
	return err
}

// dummyHash makes a login for an unknown user cost what a known one does,
// so timing does not reveal which names exist.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("vomosync-no-such-operator"), bcrypt.DefaultCost)

// Operator is a signed-in operator.
type Operator struct {
	ID       int64
	Username string
}

// CheckPassword verifies an operator's password.
func CheckPassword(ctx context.Context, db DBTX, username, password string) (Operator, error) {
	op := Operator{Username: username}
	var hash string
	var disabled bool
	err := db.QueryRow(ctx, `SELECT id, password_hash, disabled FROM vomosync.operators WHERE username = $1`, username).
		Scan(&op.ID, &hash, &disabled)
	if errors.Is(err, pgx.ErrNoRows) {
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return op, ErrBadCredentials
	}
	if err != nil {
		return op, fmt.Errorf("operator %s: %w", username, err)
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil || disabled {
		return op, ErrBadCredentials
	}
	_, _ = db.Exec(ctx, `UPDATE vomosync.operators SET last_login_at = now() WHERE id = $1`, op.ID)
	return op, nil
}

// TokenPrefix starts every console token, so a leaked one is recognisable.
const TokenPrefix = "vsct_"

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func sha(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// NewConsoleToken creates a token that shows customer its own health and
// nothing else. The token is returned once; only its hash is stored.
func NewConsoleToken(ctx context.Context, db DBTX, customer, label, createdBy string, ttl time.Duration) (string, int64, error) {
	tok := TokenPrefix + randomToken()
	var expires *time.Time
	if ttl > 0 {
		t := time.Now().Add(ttl)
		expires = &t
	}
	var id int64
	err := db.QueryRow(ctx, `INSERT INTO vomosync.console_tokens (customer_id, token_hash, label, created_by, expires_at)
		SELECT id, $2, $3, $4, $5 FROM vomosync.customers WHERE id = $1 RETURNING id`,
		customer, sha(tok), label, createdBy, expires).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", 0, fmt.Errorf("customer %s not found", customer)
	}
	if err != nil {
		return "", 0, fmt.Errorf("console token for %s: %w", customer, err)
	}
	return tok, id, nil
}

// RevokeConsoleToken revokes a token (and so its sessions).
func RevokeConsoleToken(ctx context.Context, db DBTX, customer string, id int64) error {
	tag, err := db.Exec(ctx, `UPDATE vomosync.console_tokens SET revoked_at = now() WHERE id = $1 AND customer_id = $2 AND revoked_at IS NULL`, id, customer)
	if err != nil {
		return fmt.Errorf("revoke console token %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("console token %d of %s: %w", id, customer, ErrBadCredentials)
	}
	return nil
}

// CheckConsoleToken returns the customer and token id of a live token.
func CheckConsoleToken(ctx context.Context, db DBTX, token string) (string, int64, error) {
	var customer string
	var id int64
	err := db.QueryRow(ctx, `UPDATE vomosync.console_tokens SET last_used_at = now()
		WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
		RETURNING customer_id, id`, sha(token)).Scan(&customer, &id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", 0, ErrBadCredentials
	}
	if err != nil {
		return "", 0, fmt.Errorf("console token: %w", err)
	}
	return customer, id, nil
}

// Limiter counts failed logins per key (user name, client address) in the
// database, so every console replica enforces the same limit.
type Limiter struct {
	DB     DBTX
	Max    int           // failures allowed per key in Window (default 5)
	Window time.Duration // default 15m
}

func (l Limiter) max() int {
	if l.Max <= 0 {
		return 5
	}
	return l.Max
}

func (l Limiter) window() time.Duration {
	if l.Window <= 0 {
		return 15 * time.Minute
	}
	return l.Window
}

// Allow returns ErrRateLimited when any key has used up its failures.
func (l Limiter) Allow(ctx context.Context, keys ...string) error {
	var n int
	err := l.DB.QueryRow(ctx, `SELECT coalesce(max(c), 0) FROM (SELECT count(*) AS c FROM vomosync.login_failures
		WHERE key = ANY($1) AND at > now() - $2::interval GROUP BY key) k`, keys, l.window()).Scan(&n)
	if err != nil {
		return fmt.Errorf("login rate limit: %w", err)
	}
	if n >= l.max() {
		return ErrRateLimited
	}
	return nil
}

// Fail records a failed login for every key, and forgets old failures.
func (l Limiter) Fail(ctx context.Context, keys ...string) error {
	_, err := l.DB.Exec(ctx, `INSERT INTO vomosync.login_failures (key) SELECT unnest($1::text[])`, keys)
	if err != nil {
		return fmt.Errorf("record login failure: %w", err)
	}
	_, err = l.DB.Exec(ctx, `DELETE FROM vomosync.login_failures WHERE at < now() - $1::interval`, 2*l.window())
	return err
}

// Session is a live console session.
type Session struct {
	Kind       string // operator | customer
	OperatorID int64
	Username   string // operator sessions
	CustomerID string // customer sessions
	TokenID    int64  // customer sessions
	Expires    time.Time
	// CSRF is the anti-forgery token forms carry; derived from the cookie.
	CSRF string
}

// Session kinds.
const (
	KindOperator = "operator"
	KindCustomer = "customer"
)

// Sessions stores sessions under HMAC(key, cookie token).
type Sessions struct {
	DB  DBTX
	Key []byte
	TTL time.Duration // default 12h
}

func (s Sessions) mac(purpose, token string) []byte {
	m := hmac.New(sha256.New, s.Key)
	m.Write([]byte(purpose + "\x00" + token))
	return m.Sum(nil)
}

func (s Sessions) ttl() time.Duration {
	if s.TTL <= 0 {
		return 12 * time.Hour
	}
	return s.TTL
}

// NewOperator opens an operator session and returns the cookie token.
func (s Sessions) NewOperator(ctx context.Context, op Operator, remote string) (string, error) {
	tok := randomToken()
	_, err := s.DB.Exec(ctx, `INSERT INTO vomosync.console_sessions (token_hash, kind, operator_id, expires_at, remote_addr)
		VALUES ($1, 'operator', $2, $3, $4)`, s.mac("session", tok), op.ID, time.Now().Add(s.ttl()), remote)
	if err != nil {
		return "", fmt.Errorf("open session: %w", err)
	}
	return tok, nil
}

// NewCustomer opens a customer session bound to the console token id.
func (s Sessions) NewCustomer(ctx context.Context, customer string, tokenID int64, remote string) (string, error) {
	tok := randomToken()
	_, err := s.DB.Exec(ctx, `INSERT INTO vomosync.console_sessions (token_hash, kind, customer_id, token_id, expires_at, remote_addr)
		VALUES ($1, 'customer', $2, $3, $4, $5)`, s.mac("session", tok), customer, tokenID, time.Now().Add(s.ttl()), remote)
	if err != nil {
		return "", fmt.Errorf("open session: %w", err)
	}
	return tok, nil
}

// Get returns the live session of a cookie token: not expired, its operator
// not disabled, its console token not revoked or expired.
func (s Sessions) Get(ctx context.Context, token string) (Session, error) {
	var ss Session
	if token == "" {
		return ss, ErrNoSession
	}
	var opID, tokID *int64
	var user, cust *string
	err := s.DB.QueryRow(ctx, `SELECT s.kind, s.operator_id, o.username, s.customer_id, s.token_id, s.expires_at
		FROM vomosync.console_sessions s
		LEFT JOIN vomosync.operators o ON o.id = s.operator_id
		LEFT JOIN vomosync.console_tokens t ON t.id = s.token_id
		WHERE s.token_hash = $1 AND s.expires_at > now()
		  AND (s.kind = 'operator' AND NOT o.disabled
		       OR s.kind = 'customer' AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now()))`,
		s.mac("session", token)).Scan(&ss.Kind, &opID, &user, &cust, &tokID, &ss.Expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return ss, ErrNoSession
	}
	if err != nil {
		return ss, fmt.Errorf("session: %w", err)
	}
	if opID != nil {
		ss.OperatorID, ss.Username = *opID, *user
	}
	if cust != nil {
		ss.CustomerID, ss.TokenID = *cust, *tokID
	}
	ss.CSRF = base64.RawURLEncoding.EncodeToString(s.mac("csrf", token))
	return ss, nil
}

// End deletes the session of a cookie token (logout) and, now and then,
// expired ones.
func (s Sessions) End(ctx context.Context, token string) error {
	_, err := s.DB.Exec(ctx, `DELETE FROM vomosync.console_sessions WHERE token_hash = $1 OR expires_at < now() - interval '1 day'`,
		s.mac("session", token))
	if err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}

// CheckCSRF compares a form's token with the session's in constant time.
func CheckCSRF(ss Session, got string) bool {
	return ss.CSRF != "" && hmac.Equal([]byte(ss.CSRF), []byte(got))
}
