// Package secrets encrypts customer API tokens at rest: envelope encryption
// with a fresh AES-256-GCM data key per value, the data key wrapped by a
// key-encryption key (KEK). Both layers bind the customer id as associated
// data, so a ciphertext copied to another customer does not decrypt.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
)

// ErrDecrypt is returned for any ciphertext that does not open (wrong
// customer, wrong key, tampering). It never says which.
var ErrDecrypt = errors.New("secret does not decrypt for this customer and key")

// Sealed is what the database stores.
type Sealed struct {
	Ciphertext []byte
	WrappedKey []byte
	KEKID      string
}

// Keyring holds the current KEK and older ones still accepted for reading.
type Keyring struct {
	current string
	keys    map[string][]byte
}

// ParseKEK decodes a base64 32-byte key. Its id is a short hash, so rotation
// needs no naming scheme.
func ParseKEK(b64 string) (id string, key []byte, err error) {
	key, err = base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) != 32 {
		return "", nil, errors.New("VOMOSYNC_KEK must be base64 of exactly 32 bytes (openssl rand -base64 32)")
	}
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:4]), key, nil
}

// NewKeyring builds a keyring from the current KEK and previous ones.
func NewKeyring(current string, previous ...string) (*Keyring, error) {
	id, key, err := ParseKEK(current)
	if err != nil {
		return nil, err
	}
	k := &Keyring{current: id, keys: map[string][]byte{id: key}}
	for _, p := range previous {
		pid, pkey, err := ParseKEK(p)
		if err != nil {
			return nil, fmt.Errorf("previous KEK: %w", err)
		}
		k.keys[pid] = pkey
	}
	return k, nil
}

// CurrentID is the id of the KEK new values are sealed with.
func (k *Keyring) CurrentID() string { return k.current }

// Seal encrypts plaintext for customer.
func (k *Keyring) Seal(customer string, plaintext []byte) (Sealed, error) {
	dek := make([]byte, 32)
	if _, err := rand.Read(dek); err != nil {
		return Sealed{}, fmt.Errorf("data key: %w", err)
	}
	ct, err := gcmSeal(dek, plaintext, []byte("value|"+customer))
	if err != nil {
		return Sealed{}, err
	}
	wrapped, err := gcmSeal(k.keys[k.current], dek, []byte("dek|"+customer+"|"+k.current))
	if err != nil {
		return Sealed{}, err
	}
	return Sealed{Ciphertext: ct, WrappedKey: wrapped, KEKID: k.current}, nil
}

// Open decrypts s for customer.
func (k *Keyring) Open(customer string, s Sealed) ([]byte, error) {
	kek, ok := k.keys[s.KEKID]
	if !ok {
		return nil, fmt.Errorf("%w: key %s is not configured", ErrDecrypt, s.KEKID)
	}
	dek, err := gcmOpen(kek, s.WrappedKey, []byte("dek|"+customer+"|"+s.KEKID))
	if err != nil {
		return nil, ErrDecrypt
	}
	pt, err := gcmOpen(dek, s.Ciphertext, []byte("value|"+customer))
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// Rewrap moves s to the current KEK without touching the data key or value.
func (k *Keyring) Rewrap(customer string, s Sealed) (Sealed, error) {
	if s.KEKID == k.current {
		return s, nil
	}
	kek, ok := k.keys[s.KEKID]
	if !ok {
		return Sealed{}, fmt.Errorf("%w: key %s is not configured", ErrDecrypt, s.KEKID)
	}
	dek, err := gcmOpen(kek, s.WrappedKey, []byte("dek|"+customer+"|"+s.KEKID))
	if err != nil {
		return Sealed{}, ErrDecrypt
	}
	wrapped, err := gcmSeal(k.keys[k.current], dek, []byte("dek|"+customer+"|"+k.current))
	if err != nil {
		return Sealed{}, err
	}
	return Sealed{Ciphertext: s.Ciphertext, WrappedKey: wrapped, KEKID: k.current}, nil
}

func gcmSeal(key, plaintext, aad []byte) ([]byte, error) {
	g, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	return g.Seal(nonce, nonce, plaintext, aad), nil
}

func gcmOpen(key, sealed, aad []byte) ([]byte, error) {
	g, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < g.NonceSize() {
		return nil, ErrDecrypt
	}
	return g.Open(nil, sealed[:g.NonceSize()], sealed[g.NonceSize():], aad)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("cipher: %w", err)
	}
	return cipher.NewGCM(b)
}
