package secrets_test

import (
	"crypto/rand"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/secrets"
)

func newKEK(t *testing.T) string {
	b := make([]byte, 32)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return base64.StdEncoding.EncodeToString(b)
}

func TestSealOpenBoundToCustomer(t *testing.T) {
	t.Parallel()
	k, err := secrets.NewKeyring(newKEK(t))
	require.NoError(t, err)
	s, err := k.Seal("acme", []byte("tok-1"))
	require.NoError(t, err)
	pt, err := k.Open("acme", s)
	require.NoError(t, err)
	require.Equal(t, "tok-1", string(pt))
	_, err = k.Open("globex", s)
	require.ErrorIs(t, err, secrets.ErrDecrypt, "a ciphertext copied to another customer must not decrypt")
	require.NotContains(t, string(s.Ciphertext), "tok-1")
}

func TestRotationRewraps(t *testing.T) {
	t.Parallel()
	oldKEK, newKEKv := newKEK(t), newKEK(t)
	oldRing, err := secrets.NewKeyring(oldKEK)
	require.NoError(t, err)
	s, err := oldRing.Seal("acme", []byte("tok"))
	require.NoError(t, err)
	ring, err := secrets.NewKeyring(newKEKv, oldKEK)
	require.NoError(t, err)
	r, err := ring.Rewrap("acme", s)
	require.NoError(t, err)
	require.Equal(t, ring.CurrentID(), r.KEKID)
	only, err := secrets.NewKeyring(newKEKv)
	require.NoError(t, err)
	pt, err := only.Open("acme", r)
	require.NoError(t, err)
	require.Equal(t, "tok", string(pt))
	_, _, err = secrets.ParseKEK("short")
	require.Error(t, err)
}
