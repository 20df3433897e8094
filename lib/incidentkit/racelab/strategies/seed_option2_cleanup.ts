// Report, Option 2 / "Proposed Fix (Combined Approach)":
// once: run 01_orphan_memberships_cleanup.sql; then in ensureUserWorkspace:
if (existingMembership) {
  const workspaceRows = await tx
    .select()
    .from(workspaces)
    .where(eq(workspaces.id, existingMembership.workspaceId))
    .limit(1);

  if (workspaceRows.length > 0) {
    primaryWorkspaceId = existingMembership.workspaceId;
    const inserted = await tx
      .insert(users)
      .values({ privyDid: userId, primaryWorkspaceId })
      .onConflictDoNothing()
      .returning();
    // ... rest of logic
  } else {
    console.warn(`Orphaned workspace membership detected for user ${userId}, workspace ${existingMembership.workspaceId}`);
    await tx.delete(workspaceMembers).where(eq(workspaceMembers.id, existingMembership.id));
    const tempWorkspaceId = randomUUID();
    // ... existing code for creating a new workspace
  }
} else {
  // ... existing code
}
