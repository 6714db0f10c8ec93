package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/config"
)

type sample struct {
	config.Common
	DatabaseURL string        `env:"DATABASE_URL,required,notEmpty"`
	Every       time.Duration `env:"EVERY" envDefault:"1s"`
}

func (s sample) Validate() error { return s.Common.Validate() }

func TestParseNamesTheVariable(t *testing.T) {
	t.Parallel()
	_, err := config.ParseFrom[sample](map[string]string{"EVERY": "1s"})
	require.ErrorContains(t, err, "DATABASE_URL")

	_, err = config.ParseFrom[sample](map[string]string{"DATABASE_URL": "x", "EVERY": "soon"})
	require.ErrorContains(t, err, "EVERY")

	_, err = config.ParseFrom[sample](map[string]string{"DATABASE_URL": "x", "LOG_LEVEL": "loud"})
	require.ErrorContains(t, err, "LOG_LEVEL")

	cfg, err := config.ParseFrom[sample](map[string]string{"DATABASE_URL": "x"})
	require.NoError(t, err)
	require.Equal(t, time.Second, cfg.Every)
}
