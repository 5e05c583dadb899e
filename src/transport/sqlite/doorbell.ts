/** The doorbell moved to the shared consumer core; kept here for imports of this path. */
export { Doorbell } from '../virtual/doorbell.ts';
