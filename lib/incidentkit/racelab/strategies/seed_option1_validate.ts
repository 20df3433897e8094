// Report, Option 1 (defensive validation)
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
    // Orphaned membership detected: follow the "no membership" path
    const tempWorkspaceId = randomUUID();
    // ... existing code for creating a new workspace
  }
}
