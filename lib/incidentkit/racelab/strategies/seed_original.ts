// packages/web/src/server/utils/workspace.ts (as the report quotes it)
if (!user) {
  const existingMembershipRows = await tx
    .select()
    .from(workspaceMembers)
    .where(eq(workspaceMembers.userId, userId))
    .orderBy(desc(workspaceMembers.isPrimary), desc(workspaceMembers.joinedAt))
    .limit(1);

  const existingMembership = existingMembershipRows[0];
  let primaryWorkspaceId: string;

  if (existingMembership) {
    primaryWorkspaceId = existingMembership.workspaceId;
    const inserted = await tx
      .insert(users)
      .values({ privyDid: userId, primaryWorkspaceId })
      .onConflictDoNothing()
      .returning();
    // ...
  } else {
    // "no membership" path: create a workspace, the user, a primary membership
  }
}
