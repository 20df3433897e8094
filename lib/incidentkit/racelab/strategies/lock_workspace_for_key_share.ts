// packages/web/src/server/utils/workspace.ts, inside the existing db.transaction(async (tx) => ...)
if (existingMembership) {
  // Lock the membership's workspace row FOR KEY SHARE (the lock the FK check itself takes)
  // before using it. A concurrent DELETE of that workspace has then either committed
  // (no row comes back) or it is still running (this select waits for it to end).
  const [workspace] = await tx
    .select({ id: workspaces.id })
    .from(workspaces)
    .where(eq(workspaces.id, existingMembership.workspaceId))
    .for('key share');

  if (workspace) {
    primaryWorkspaceId = workspace.id;
    const inserted = await tx
      .insert(users)
      .values({ privyDid: userId, primaryWorkspaceId })
      .onConflictDoNothing()
      .returning();
    // ... rest of logic unchanged
  } else {
    // The workspace is gone: take the existing "no membership" path
    // (create a new workspace, the user, and a primary membership).
  }
} else {
  // ... existing "no membership" path, unchanged
}
