package customer_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/pgtest"
	"github.com/vomosync/vomosync/pkg/secrets"
)

func kek() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func TestTokensEncryptedAndRotated(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	oldKEK, newKEK := kek(), kek()
	oldRing, err := secrets.NewKeyring(oldKEK)
	require.NoError(t, err)
	store := customer.NewStore(db.Pool, oldRing)
	require.NoError(t, store.Add(ctx, customer.New{ID: "acme", Token: "tok-secret-acme"}))
	require.NoError(t, store.Add(ctx, customer.New{ID: "globex", Token: "tok-secret-globex"}))

	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM vomosync.customers WHERE position('tok-secret' in encode(token_ciphertext, 'escape')) > 0`).Scan(&n))
	require.Zero(t, n, "tokens are not stored in clear")

	// A ciphertext copied to another customer does not decrypt.
	_, err = db.Pool.Exec(ctx, `UPDATE vomosync.customers g SET token_ciphertext = a.token_ciphertext, token_wrapped_key = a.token_wrapped_key
		FROM vomosync.customers a WHERE a.id = 'acme' AND g.id = 'globex'`)
	require.NoError(t, err)
	_, err = store.Token(ctx, "globex")
	require.ErrorIs(t, err, secrets.ErrDecrypt)

	ring, err := secrets.NewKeyring(newKEK, oldKEK)
	require.NoError(t, err)
	rotated := customer.NewStore(db.Pool, ring)
	moved, err := rotated.Rewrap(ctx)
	require.Error(t, err, "the tampered globex row stops the rotation with a clear error")
	require.Equal(t, 1, moved, "acme was re-wrapped before it")
	onlyNew, err := secrets.NewKeyring(newKEK)
	require.NoError(t, err)
	tok, err := customer.NewStore(db.Pool, onlyNew).Token(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, "tok-secret-acme", tok, "readable with the new key alone")
}
