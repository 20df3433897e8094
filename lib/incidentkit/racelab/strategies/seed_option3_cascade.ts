// Report, Option 3: migration 02_workspace_members_cascade.sql, and in the Drizzle schema
// (packages/web/src/db/schema/workspaces.ts) -- which the report shows already reads:
workspaceId: uuid('workspace_id')
  .notNull()
  .references(() => workspaces.id, { onDelete: 'cascade' }),
// ensureUserWorkspace itself is unchanged (the seed_original code).
// users.primaryWorkspaceId -> workspaces.id keeps no onDelete action.
