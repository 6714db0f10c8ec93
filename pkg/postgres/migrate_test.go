package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/pgtest"
	"github.com/vomosync/vomosync/pkg/postgres"
)

func TestMigrateIsIdempotentAndCheckSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewEmpty(t)
	require.ErrorIs(t, postgres.CheckSchema(ctx, db.Pool), postgres.ErrSchemaBehind)
	applied, err := postgres.Migrate(ctx, db.Pool)
	require.NoError(t, err)
	require.NotEmpty(t, applied)
	again, err := postgres.Migrate(ctx, db.Pool)
	require.NoError(t, err)
	require.Empty(t, again)
	require.NoError(t, postgres.CheckSchema(ctx, db.Pool))
}

func TestConnectFailsClearly(t *testing.T) {
	t.Parallel()
	_, err := postgres.Connect(context.Background(), postgres.Settings{
		URL: "postgres://u:secretpw@127.0.0.1:1/x", ConnectTimeout: 300 * time.Millisecond})
	require.ErrorContains(t, err, "postgres unreachable at 127.0.0.1:1/x")
	require.NotContains(t, err.Error(), "secretpw")
}
