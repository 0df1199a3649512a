import java.io.FileOutputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;

import org.apache.jena.query.Query;
import org.apache.jena.query.QueryExecution;
import org.apache.jena.query.QueryExecutionFactory;
import org.apache.jena.query.QueryFactory;
import org.apache.jena.query.ResultSetFormatter;
import org.apache.jena.rdf.model.Model;
import org.apache.jena.rdf.model.ModelFactory;
import org.apache.jena.riot.RDFDataMgr;

/**
 * Runs SPARQL queries with Apache Jena ARQ (the engine of Fuseki and of Jena's {@code sparql}
 * command) over the union of RDF files, and writes each SELECT result as SPARQL JSON.
 *
 * Usage: {@code java -cp JARS ArqQueries.java OUT_DIR DATA... -- QUERY...}; the result of the
 * i-th query (from 0) goes to {@code OUT_DIR/i.json}. tests/test_query_engines.py compares them
 * with Oxigraph's rows: itkg's queries must mean the same on every SPARQL 1.1 engine. One JVM runs
 * every query, because starting Java once per query would dominate the test's time.
 */
public class ArqQueries {
    public static void main(String[] args) throws Exception {
        Path out = Paths.get(args[0]);
        Model model = ModelFactory.createDefaultModel();
        int i = 1;
        for (; i < args.length && !args[i].equals("--"); i++) {
            RDFDataMgr.read(model, args[i]);
        }
        int index = 0;
        for (i = i + 1; i < args.length; i++, index++) {
            String text = new String(Files.readAllBytes(Paths.get(args[i])), StandardCharsets.UTF_8);
            Query query = QueryFactory.create(text);
            try (QueryExecution execution = QueryExecutionFactory.create(query, model);
                 OutputStream stream = new FileOutputStream(out.resolve(index + ".json").toFile())) {
                ResultSetFormatter.outputAsJSON(stream, execution.execSelect());
            }
        }
    }
}
