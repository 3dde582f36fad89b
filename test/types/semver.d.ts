// semver ships no types and @types/semver is not a dependency: the two functions the tests use.
declare module 'semver' {
  interface SemVer {
    version: string;
  }
  const semver: {
    minVersion(range: string): SemVer | null;
    satisfies(version: string, range: string): boolean;
  };
  export default semver;
}
