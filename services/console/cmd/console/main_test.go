package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/config"
)

func TestConfig(t *testing.T) {
	t.Parallel()
	base := func() map[string]string {
		return map[string]string{"DATABASE_URL": "postgres://x/y", "CONSOLE_SESSION_KEY": "0123456789abcdef0123456789abcdef"}
	}
	cfg, err := config.ParseFrom[Config](base())
	require.NoError(t, err)
	require.Equal(t, ":8080", cfg.Addr)
	require.True(t, cfg.SecureCookies, "secure cookies unless turned off")

	env := base()
	env["CONSOLE_SESSION_KEY"] = "short"
	_, err = config.ParseFrom[Config](env)
	require.ErrorContains(t, err, "CONSOLE_SESSION_KEY")

	env = base()
	delete(env, "CONSOLE_SESSION_KEY")
	_, err = config.ParseFrom[Config](env)
	require.ErrorContains(t, err, "CONSOLE_SESSION_KEY")

	env = base()
	env["CONSOLE_DLQ_RETRY"] = "true"
	_, err = config.ParseFrom[Config](env)
	require.ErrorContains(t, err, "NATS_URL")

	env = base()
	env["CONSOLE_ADDR"] = "8080"
	_, err = config.ParseFrom[Config](env)
	require.ErrorContains(t, err, "CONSOLE_ADDR")
}
