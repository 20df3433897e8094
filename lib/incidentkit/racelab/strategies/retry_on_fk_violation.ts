// packages/web/src/server/utils/workspace.ts: move the body of ensureUserWorkspace's
// transaction, unchanged, into ensureUserWorkspaceTx(tx, userId), and retry the whole
// transaction (which re-reads the membership) when the FK check fails (SQLSTATE 23503).
const MAX_ATTEMPTS = 3;

export async function ensureUserWorkspace(userId: string) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await db.transaction((tx) => ensureUserWorkspaceTx(tx, userId));
    } catch (err) {
      const code = (err as any)?.code ?? (err as any)?.cause?.code; // pg error, or wrapped by Drizzle
      if (code === '23503' && attempt < MAX_ATTEMPTS) continue;
      throw err;
    }
  }
}
